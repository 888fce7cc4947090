// rtntechnique.cpp: round-to-nearest weight quantization (the reference min-max quantizer of
// ../shared/REFERENCE.md, optionally with the MSE-optimal range search), as a plugin.
#include "core/quant/quantizer.h"
#include "core/sdk/technique.h"

#include <QObject>

namespace {

using namespace bitsmith::core;

class RtnTechnique final : public Technique
{
public:
    QString id() const override { return QStringLiteral("rtn"); }
    QString displayName() const override { return QStringLiteral("Round to nearest"); }
    TechniqueCategory category() const override { return TechniqueCategory::Quantization; }
    QString description() const override
    {
        return QStringLiteral("Min-max round-to-nearest per tensor, channel or group; no calibration data. "
                              "Optionally searches the clipping range that minimises the error.");
    }
    QList<ParameterSpec> parameters() const override
    {
        return {ParameterSpec::boolean(QStringLiteral("mse"), false,
                                       QStringLiteral("Search the range (shrinking it from 1.0 to 0.2) that minimises "
                                                      "the p=2.4 norm of the error.")),
                ParameterSpec::choice(QStringLiteral("execution"), QStringLiteral("weight-only"),
                                      {QStringLiteral("weight-only"), QStringLiteral("w8a8")},
                                      QStringLiteral("weight-only: packed weights with f32 activations; w8a8: 8-bit "
                                                     "symmetric per-channel weights with int8 activations (oneDNN)."))};
    }

    Expected<void> validate(const LayerSettings &settings, std::int64_t rows, std::int64_t cols) const override
    {
        if (auto base = Technique::validate(settings, rows, cols); !base)
            return base;
        if (settings.parameters.value(QStringLiteral("execution")).toString() == QLatin1String("w8a8")
            && !(settings.format.bits == 8 && settings.format.symmetric && settings.format.groupSize == 0))
            return bitsmith::core::unexpected(
                fail(ErrorCode::InvalidArgument, QStringLiteral("w8a8 execution needs 8-bit symmetric per-channel weights"))
                    .forParameter(QStringLiteral("execution"))
                    .withHint(QStringLiteral("use bits 8, symmetric true, groupSize 0")));
        return {};
    }

    Expected<void> apply(TechniqueContext &ctx) override
    {
        for (const LayerTarget &layer : ctx.group.layers) {
            if (layer.settings.technique != id())
                continue;
            if (ctx.feedback.isCancelled())
                return bitsmith::core::unexpected(fail(ErrorCode::Cancelled, QStringLiteral("cancelled")));
            const bool mse = layer.settings.parameters.value(QStringLiteral("mse")).toBool();
            auto q = quantizeRtn(MatrixView{layer.weight, layer.rows, layer.cols}, layer.settings.format, mse);
            if (!q)
                return bitsmith::core::unexpected(std::move(q.error()).forLayer(layer.name));
            const bool w8a8 = layer.settings.parameters.value(QStringLiteral("execution")).toString() == QLatin1String("w8a8");
            ctx.results.setQuantized(layer, std::move(*q), w8a8 ? Execution::W8A8 : Execution::WeightOnly);
        }
        return {};
    }
};

class RtnFactory final : public QObject, public TechniqueFactory
{
    Q_OBJECT
    Q_PLUGIN_METADATA(IID BITSMITH_TECHNIQUE_IID FILE "plugin.json")
    Q_INTERFACES(bitsmith::core::TechniqueFactory)

public:
    std::unique_ptr<Technique> create() const override { return std::make_unique<RtnTechnique>(); }
};

} // namespace

#include "rtntechnique.moc"

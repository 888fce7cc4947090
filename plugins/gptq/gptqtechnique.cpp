// gptqtechnique.cpp: GPTQ (Frantar et al., 2022) as a plugin: second-order weight quantization
// with the Hessian of each layer's calibration inputs, computed by the engine on the outputs of
// the already-quantized blocks (sequential, and within a block q/k/v -> o -> gate/up -> down).
#include "core/quant/gptq.h"
#include "core/sdk/technique.h"

#include <QObject>

namespace {

using namespace bitsmith::core;

class GptqTechnique final : public Technique
{
public:
    QString id() const override { return QStringLiteral("gptq"); }
    QString displayName() const override { return QStringLiteral("GPTQ"); }
    TechniqueCategory category() const override { return TechniqueCategory::Quantization; }
    QString description() const override
    {
        return QStringLiteral("Quantizes columns one at a time and spreads each column's error over the columns not yet "
                              "quantized, using the Hessian of the layer's calibration inputs.");
    }
    QList<ParameterSpec> parameters() const override
    {
        return {ParameterSpec::real(QStringLiteral("dampPercent"), 0.01, 0.0, 1.0,
                                    QStringLiteral("Damping added to the Hessian diagonal, as a fraction of its mean.")),
                ParameterSpec::integer(QStringLiteral("blockSize"), 128, 1, 4096,
                                       QStringLiteral("Columns per lazy-update block.")),
                ParameterSpec::boolean(QStringLiteral("actOrder"), false,
                                       QStringLiteral("Quantize columns in order of decreasing Hessian diagonal "
                                                      "(stores a group index per column when grouped).")),
                ParameterSpec::boolean(QStringLiteral("staticGroups"), false,
                                       QStringLiteral("Compute all group ranges up front from the original weights.")),
                ParameterSpec::boolean(QStringLiteral("mse"), false,
                                       QStringLiteral("Search each group's range to minimise the quantization error."))};
    }
    bool needsCalibration() const override { return true; }

    Expected<void> apply(TechniqueContext &ctx) override
    {
        for (const LayerTarget &layer : ctx.group.layers) {
            if (layer.settings.technique != id())
                continue;
            const ParameterValues &p = layer.settings.parameters;
            GptqOptions o;
            o.dampPercent = p.value(QStringLiteral("dampPercent")).toDouble();
            o.blockSize = p.value(QStringLiteral("blockSize")).toInt();
            o.actOrder = p.value(QStringLiteral("actOrder")).toBool();
            o.staticGroups = p.value(QStringLiteral("staticGroups")).toBool();
            o.mseSearch = p.value(QStringLiteral("mse")).toBool();
            auto r = gptqQuantize(MatrixView{layer.weight, layer.rows, layer.cols}, ctx.group.calibration->hessian(),
                                  layer.settings.format, o, &ctx.feedback);
            if (!r)
                return bitsmith::core::unexpected(std::move(r.error()).forLayer(layer.name));
            ctx.feedback.log(QStringLiteral("%1: GPTQ loss %2, %3 dead columns").arg(layer.name).arg(r->loss).arg(r->deadColumns));
            ctx.results.setQuantized(layer, std::move(r->q), Execution::WeightOnly);
        }
        return {};
    }
};

class GptqFactory final : public QObject, public TechniqueFactory
{
    Q_OBJECT
    Q_PLUGIN_METADATA(IID BITSMITH_TECHNIQUE_IID FILE "plugin.json")
    Q_INTERFACES(bitsmith::core::TechniqueFactory)

public:
    std::unique_ptr<Technique> create() const override { return std::make_unique<GptqTechnique>(); }
};

} // namespace

#include "gptqtechnique.moc"

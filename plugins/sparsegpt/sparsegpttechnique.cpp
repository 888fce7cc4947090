// sparsegpttechnique.cpp: SparseGPT (Frantar & Alistarh 2023) as a plugin — Hessian-based mask
// selection with GPTQ-style error compensation (core/prune/sparsegpt.h), unstructured or N:M, and
// optionally joint quantization of the kept weights to the layer's bits / groupSize
// (`quantize`: sparse + 4-bit in one pass, stored as a quantized layer whose zeros are exact).
#include "core/prune/mask.h"
#include "core/prune/sparsegpt.h"
#include "core/sdk/technique.h"

#include <QObject>

namespace {

using namespace bitsmith::core;

class SparseGptTechnique final : public Technique
{
public:
    QString id() const override { return QStringLiteral("sparsegpt"); }
    QString displayName() const override { return QStringLiteral("SparseGPT"); }
    TechniqueCategory category() const override { return TechniqueCategory::Pruning; }
    QString description() const override
    {
        return QStringLiteral("One-shot pruning with the inverse Hessian of the layer's calibration inputs: chooses "
                              "the mask per block of columns and updates the remaining weights to compensate; "
                              "unstructured (`sparsity`) or N:M (`pattern`), optionally quantizing the kept weights.");
    }
    QList<ParameterSpec> parameters() const override
    {
        return {ParameterSpec::real(QStringLiteral("dampPercent"), 0.01, 0.0, 1.0,
                                    QStringLiteral("Damping added to the Hessian diagonal, as a fraction of its mean.")),
                ParameterSpec::integer(QStringLiteral("blockSize"), 128, 1, 4096,
                                       QStringLiteral("Columns per block (the unstructured mask is chosen per block).")),
                ParameterSpec::boolean(QStringLiteral("quantize"), false,
                                       QStringLiteral("Also quantize the kept weights to the layer's bits and group size."))};
    }
    bool needsCalibration() const override { return true; }
    Expected<void> validate(const LayerSettings &settings, std::int64_t rows, std::int64_t cols) const override
    {
        if (auto ok = validateSparsity(settings.sparsity, settings.pattern, cols); !ok)
            return ok;
        if (settings.pattern.isNM() && settings.parameters.value(QStringLiteral("blockSize")).toInt() % settings.pattern.m != 0)
            return bitsmith::core::unexpected(fail(ErrorCode::InvalidArgument, QStringLiteral("blockSize must be a multiple of M"))
                                                  .forParameter(QStringLiteral("blockSize"))
                                                  .withHint(QStringLiteral("e.g. blockSize 128 for 2:4 or 4:8")));
        if (settings.parameters.value(QStringLiteral("quantize")).toBool())
            return Technique::validate(settings, rows, cols); // bits and group size
        return {};
    }
    Expected<void> apply(TechniqueContext &ctx) override
    {
        const CalibrationStats *stats = ctx.group.calibration;
        if (!stats)
            return bitsmith::core::unexpected(fail(ErrorCode::Internal, QStringLiteral("SparseGPT needs calibration statistics")));
        for (const LayerTarget *layer : layersUsing(ctx.group, id())) {
            SparseGptOptions options;
            options.dampPercent = layer->settings.parameters.value(QStringLiteral("dampPercent")).toDouble();
            options.blockSize = layer->settings.parameters.value(QStringLiteral("blockSize")).toInt();
            if (layer->settings.parameters.value(QStringLiteral("quantize")).toBool())
                options.quantize = layer->settings.format;
            auto r = sparseGptPrune(MatrixView{layer->weight, layer->rows, layer->cols}, stats->hessian(),
                                    layer->settings.sparsity, layer->settings.pattern, options, &ctx.feedback);
            if (!r)
                return bitsmith::core::unexpected(std::move(r.error()).forLayer(layer->name));
            if (r->q)
                ctx.results.setQuantized(*layer, std::move(*r->q), Execution::WeightOnly);
            else
                ctx.results.setPruned(*layer, r->weights);
        }
        return {};
    }
};

class SparseGptFactory final : public QObject, public TechniqueFactory
{
    Q_OBJECT
    Q_PLUGIN_METADATA(IID BITSMITH_TECHNIQUE_IID FILE "plugin.json")
    Q_INTERFACES(bitsmith::core::TechniqueFactory)

public:
    std::unique_ptr<Technique> create() const override { return std::make_unique<SparseGptTechnique>(); }
};

} // namespace

#include "sparsegpttechnique.moc"

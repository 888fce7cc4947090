// wandatechnique.cpp: Wanda (Sun et al. 2023) as a plugin — prunes by |W_ij| · ||X_j||₂, the
// weight times the norm of its input over the calibration tokens, per output row (or N:M), with no
// weight update. The norms come from the engine's sequential calibration statistics (mean x²).
#include "core/prune/mask.h"
#include "core/sdk/technique.h"

#include <QObject>

namespace {

using namespace bitsmith::core;

class WandaTechnique final : public Technique
{
public:
    QString id() const override { return QStringLiteral("wanda"); }
    QString displayName() const override { return QStringLiteral("Wanda"); }
    TechniqueCategory category() const override { return TechniqueCategory::Pruning; }
    QString description() const override
    {
        return QStringLiteral("Pruning by weights and activations: removes, in each output row, the weights with the "
                              "smallest |w| times the norm of their input over the calibration data; unstructured "
                              "(`sparsity`) or N:M (`pattern`). No weight update.");
    }
    QList<ParameterSpec> parameters() const override { return {}; }
    bool needsCalibration() const override { return true; }
    Expected<void> validate(const LayerSettings &settings, std::int64_t rows, std::int64_t cols) const override
    {
        return validateSparsity(settings.sparsity, settings.pattern, cols);
    }
    Expected<void> apply(TechniqueContext &ctx) override
    {
        const CalibrationStats *stats = ctx.group.calibration;
        if (!stats)
            return bitsmith::core::unexpected(fail(ErrorCode::Internal, QStringLiteral("Wanda needs calibration statistics")));
        for (const LayerTarget *layer : layersUsing(ctx.group, id())) {
            if (ctx.feedback.isCancelled())
                return bitsmith::core::unexpected(fail(ErrorCode::Cancelled, QStringLiteral("cancelled")));
            const MatrixView w{layer->weight, layer->rows, layer->cols};
            if (static_cast<std::int64_t>(stats->meanSquare().size()) != w.cols)
                return bitsmith::core::unexpected(fail(ErrorCode::Internal, QStringLiteral("calibration width does not match the layer"))
                                                      .forLayer(layer->name));
            auto mask = selectMask(wandaScores(w, stats->meanSquare(), stats->tokens()), w.rows, w.cols,
                                   layer->settings.sparsity, layer->settings.pattern, MaskScope::Row);
            if (!mask)
                return bitsmith::core::unexpected(std::move(mask.error()).forLayer(layer->name));
            ctx.results.setPruned(*layer, applyMask(w, *mask));
        }
        return {};
    }
};

class WandaFactory final : public QObject, public TechniqueFactory
{
    Q_OBJECT
    Q_PLUGIN_METADATA(IID BITSMITH_TECHNIQUE_IID FILE "plugin.json")
    Q_INTERFACES(bitsmith::core::TechniqueFactory)

public:
    std::unique_ptr<Technique> create() const override { return std::make_unique<WandaTechnique>(); }
};

} // namespace

#include "wandatechnique.moc"

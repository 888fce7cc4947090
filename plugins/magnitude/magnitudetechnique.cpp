// magnitudetechnique.cpp: magnitude pruning as a plugin — removes the weights of smallest |w|, over
// the whole layer or per output row, unstructured or N:M (core/prune/mask.h). No calibration.
#include "core/prune/mask.h"
#include "core/sdk/technique.h"

#include <QObject>

namespace {

using namespace bitsmith::core;

class MagnitudeTechnique final : public Technique
{
public:
    QString id() const override { return QStringLiteral("magnitude"); }
    QString displayName() const override { return QStringLiteral("Magnitude pruning"); }
    TechniqueCategory category() const override { return TechniqueCategory::Pruning; }
    QString description() const override
    {
        return QStringLiteral("Sets the weights of smallest magnitude to zero: the layer's `sparsity` fraction "
                              "(over the layer or per output row), or N:M (`pattern`). No calibration data.");
    }
    QList<ParameterSpec> parameters() const override
    {
        return {ParameterSpec::choice(QStringLiteral("scope"), QStringLiteral("layer"),
                                      {QStringLiteral("layer"), QStringLiteral("row")},
                                      QStringLiteral("Unstructured: one threshold over the layer, or the same fraction "
                                                     "removed from every output row."))};
    }
    Expected<void> validate(const LayerSettings &settings, std::int64_t rows, std::int64_t cols) const override
    {
        return validateSparsity(settings.sparsity, settings.pattern, cols);
    }
    Expected<void> apply(TechniqueContext &ctx) override
    {
        for (const LayerTarget *layer : layersUsing(ctx.group, id())) {
            if (ctx.feedback.isCancelled())
                return bitsmith::core::unexpected(fail(ErrorCode::Cancelled, QStringLiteral("cancelled")));
            const MatrixView w{layer->weight, layer->rows, layer->cols};
            const MaskScope scope = layer->settings.parameters.value(QStringLiteral("scope")).toString() == QLatin1String("row")
                                        ? MaskScope::Row
                                        : MaskScope::Layer;
            auto mask = selectMask(magnitudeScores(w), w.rows, w.cols, layer->settings.sparsity, layer->settings.pattern, scope);
            if (!mask)
                return bitsmith::core::unexpected(std::move(mask.error()).forLayer(layer->name));
            ctx.results.setPruned(*layer, applyMask(w, *mask));
        }
        return {};
    }
};

class MagnitudeFactory final : public QObject, public TechniqueFactory
{
    Q_OBJECT
    Q_PLUGIN_METADATA(IID BITSMITH_TECHNIQUE_IID FILE "plugin.json")
    Q_INTERFACES(bitsmith::core::TechniqueFactory)

public:
    std::unique_ptr<Technique> create() const override { return std::make_unique<MagnitudeTechnique>(); }
};

} // namespace

#include "magnitudetechnique.moc"

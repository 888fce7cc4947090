// smoothquanttechnique.cpp: SmoothQuant (Xiao et al., 2022) W8A8 as a plugin: activation outliers
// migrate into the weights through per-channel factors s_j = max|X_j|^α / max|W_j|^(1−α), folded
// into the op producing the input (the norms before q/k/v and gate/up; v_proj before o_proj when
// there is no GQA); weights become per-channel symmetric int8 and run with per-token dynamic int8
// activations on oneDNN's int8 matmul. Layers whose producer cannot take the factors (down_proj,
// whose up_proj is already quantized) get W8A8 without smoothing.
#include "core/quant/smoothquant.h"
#include "core/sdk/technique.h"

#include <QObject>

#include <vector>

namespace {

using namespace bitsmith::core;

class SmoothQuantTechnique final : public Technique
{
public:
    QString id() const override { return QStringLiteral("smoothquant"); }
    QString displayName() const override { return QStringLiteral("SmoothQuant W8A8"); }
    TechniqueCategory category() const override { return TechniqueCategory::Quantization; }
    QString description() const override
    {
        return QStringLiteral("8-bit weights and 8-bit per-token activations, with activation outliers smoothed into the "
                              "weights (factor α).");
    }
    QList<ParameterSpec> parameters() const override
    {
        return {ParameterSpec::real(QStringLiteral("alpha"), 0.5, 0.0, 1.0,
                                    QStringLiteral("Migration strength: 0 keeps activations, 1 moves all their range into the weights."))};
    }
    bool needsCalibration() const override { return true; }

    Expected<void> validate(const LayerSettings &settings, std::int64_t rows, std::int64_t cols) const override
    {
        if (auto base = Technique::validate(settings, rows, cols); !base)
            return base;
        if (!(settings.format.bits == 8 && settings.format.symmetric && settings.format.groupSize == 0))
            return bitsmith::core::unexpected(
                fail(ErrorCode::InvalidArgument, QStringLiteral("SmoothQuant W8A8 uses 8-bit symmetric per-channel weights"))
                    .forParameter(QStringLiteral("bits"))
                    .withHint(QStringLiteral("use --bits 8 --group 0 --sym (recipe: bits 8, groupSize 0, symmetric true)")));
        return {};
    }

    Expected<void> apply(TechniqueContext &ctx) override
    {
        LayerGroup &g = ctx.group;
        const std::vector<LayerTarget *> mine = layersUsing(g, id());
        if (mine.empty())
            return {};
        const double alpha = mine.front()->settings.parameters.value(QStringLiteral("alpha")).toDouble();
        if (canFoldInputScales(g, mine.size())) {
            const std::vector<float> actMax(g.calibration->maxAbs().begin(), g.calibration->maxAbs().end());
            std::vector<MatrixView> linears;
            for (LayerTarget *l : mine)
                linears.push_back({l->weight, l->rows, l->cols});
            auto s = smoothQuantScales(actMax, linears, alpha);
            if (!s)
                return bitsmith::core::unexpected(std::move(s.error()).forLayer(mine.front()->name));
            foldInputScales(g, *s, ctx.results);
        }
        for (LayerTarget *l : mine) {
            auto q = quantizeInt8PerChannel(MatrixView{l->weight, l->rows, l->cols});
            if (!q)
                return bitsmith::core::unexpected(std::move(q.error()).forLayer(l->name));
            ctx.results.setQuantized(*l, std::move(*q), Execution::W8A8);
        }
        return {};
    }
};

class SmoothQuantFactory final : public QObject, public TechniqueFactory
{
    Q_OBJECT
    Q_PLUGIN_METADATA(IID BITSMITH_TECHNIQUE_IID FILE "plugin.json")
    Q_INTERFACES(bitsmith::core::TechniqueFactory)

public:
    std::unique_ptr<Technique> create() const override { return std::make_unique<SmoothQuantTechnique>(); }
};

} // namespace

#include "smoothquanttechnique.moc"

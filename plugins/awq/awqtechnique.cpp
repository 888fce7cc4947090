// awqtechnique.cpp: AWQ (Lin et al., 2023) as a plugin: per-input-channel scales chosen from the
// activation magnitudes (searched to minimise the output error of the layers sharing the input),
// folded into the op producing that input, then a per-group clipping search and round-to-nearest.
//
// Scales can only be folded when every layer of the group uses AWQ (the scaled input reaches all
// of them) and the producing op is a norm or a linear not yet compressed; otherwise the layers get
// the clipping search alone. With Bitsmith's sequential engine, down_proj's producer (up_proj) is
// already quantized when down_proj's turn comes, so down_proj gets clipping only; the objective is
// the output error of the group's own linears rather than of the whole attention/MLP block.
#include "core/quant/awq.h"
#include "core/sdk/technique.h"

#include <QObject>

#include <vector>

namespace {

using namespace bitsmith::core;

class AwqTechnique final : public Technique
{
public:
    QString id() const override { return QStringLiteral("awq"); }
    QString displayName() const override { return QStringLiteral("AWQ"); }
    TechniqueCategory category() const override { return TechniqueCategory::Quantization; }
    QString description() const override
    {
        return QStringLiteral("Activation-aware weight quantization: protects the input channels with large activations by "
                              "scaling them up before rounding (scales folded into the previous op), then clips each group.");
    }
    QList<ParameterSpec> parameters() const override
    {
        return {ParameterSpec::boolean(QStringLiteral("clip"), true, QStringLiteral("Search a clipping range per group.")),
                ParameterSpec::boolean(QStringLiteral("scale"), true,
                                       QStringLiteral("Search and fold per-channel activation-aware scales.")),
                ParameterSpec::integer(QStringLiteral("grid"), 20, 1, 100, QStringLiteral("Points of the α search (α = k/grid)."))};
    }
    bool needsCalibration() const override { return true; }

    Expected<void> apply(TechniqueContext &ctx) override
    {
        LayerGroup &g = ctx.group;
        const std::vector<LayerTarget *> mine = layersUsing(g, id());
        if (mine.empty())
            return {};
        const CalibrationStats &calib = *g.calibration;
        const MatrixView x{calib.samples().data(), calib.sampleRows(), calib.features()};
        AwqOptions opt;
        opt.grid = mine.front()->settings.parameters.value(QStringLiteral("grid")).toInt();
        const bool fold = mine.front()->settings.parameters.value(QStringLiteral("scale")).toBool()
                          && canFoldInputScales(g, mine.size());
        std::vector<float> scales(static_cast<std::size_t>(calib.features()), 1.0f);
        if (fold) {
            std::vector<MatrixView> linears;
            for (LayerTarget *l : mine)
                linears.push_back({l->weight, l->rows, l->cols});
            auto s = awqSearchScales(x, linears, mine.front()->settings.format, opt, &ctx.feedback);
            if (!s)
                return bitsmith::core::unexpected(std::move(s.error()).forLayer(mine.front()->name));
            scales = s->scales;
            ctx.feedback.log(QStringLiteral("%1: AWQ α = %2").arg(mine.front()->name).arg(s->alpha));
        }
        // quantize W·diag(s) from the original W, then fold 1/s upstream (the layers' working
        // weights become W·diag(s) too, and setQuantized replaces them by the quantized values)
        std::vector<QuantizedTensor> quantized;
        for (LayerTarget *l : mine) {
            const bool clip = l->settings.parameters.value(QStringLiteral("clip")).toBool();
            auto r = awqQuantizeLinear(x, MatrixView{l->weight, l->rows, l->cols}, scales, l->settings.format, clip, opt,
                                       &ctx.feedback);
            if (!r)
                return bitsmith::core::unexpected(std::move(r.error()).forLayer(l->name));
            quantized.push_back(std::move(r->q));
        }
        if (fold)
            foldInputScales(g, scales, ctx.results);
        for (std::size_t i = 0; i < mine.size(); ++i)
            ctx.results.setQuantized(*mine[i], std::move(quantized[i]), Execution::WeightOnly);
        return {};
    }
};

class AwqFactory final : public QObject, public TechniqueFactory
{
    Q_OBJECT
    Q_PLUGIN_METADATA(IID BITSMITH_TECHNIQUE_IID FILE "plugin.json")
    Q_INTERFACES(bitsmith::core::TechniqueFactory)

public:
    std::unique_ptr<Technique> create() const override { return std::make_unique<AwqTechnique>(); }
};

} // namespace

#include "awqtechnique.moc"

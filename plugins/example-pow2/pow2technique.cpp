// pow2technique.cpp: the example plugin, a whole compression technique in one file.
//
// Technique: symmetric quantization whose scales are powers of two. Integer hardware can then
// dequantize with a shift instead of a multiply. For each group of weights we take the largest
// magnitude m, choose the smallest power-of-two scale s = 2^e with m / s <= 2^(b-1) - 1, and store
// code = clamp(round(w / s) + 2^(b-1), 0, 2^b - 1). Dequantized: w' = s * (code - 2^(b-1)).
//
// How to write your own technique (copy this folder and change the four marked places):
//   1. CMakeLists.txt: bitsmith_add_plugin(<target> ID <id> NAME "<name>" CATEGORY <category>
//      SOURCES <files>). CMake writes the plugin's metadata JSON (id, name, category, SDK API
//      version); Bitsmith reads it before loading the library.
//   2. A Technique subclass: id(), displayName(), category(), description(), parameters()
//      (the typed schema the GUI and CLI build their forms/flags from) and apply().
//   3. A TechniqueFactory subclass that is also a QObject with Q_PLUGIN_METADATA and
//      Q_INTERFACES, and creates a fresh Technique per run.
//   4. Only include core/sdk/*.h (and the value types they bring); link only bitsmith_core.
// Recipes then use it by id: {"defaults": {"technique": "pow2", "bits": 4, "groupSize": 32}}.
#include "core/sdk/technique.h"

#include <QObject>

#include <algorithm>
#include <cmath>

namespace {

using namespace bitsmith::core;

class Pow2Technique final : public Technique
{
public:
    // (2) Identity and documentation. The id is what recipes and the CLI (--method) use.
    QString id() const override { return QStringLiteral("pow2"); }
    QString displayName() const override { return QStringLiteral("Power-of-two scales (example)"); }
    TechniqueCategory category() const override { return TechniqueCategory::Quantization; }
    QString description() const override
    {
        return QStringLiteral("Symmetric round-to-nearest with power-of-two scales, so that dequantization is a shift. "
                              "The example plugin of the SDK.");
    }

    // The parameter schema: one optional knob. The recipe's "parameters" object is validated
    // against it before apply() runs, with defaults filled in.
    QList<ParameterSpec> parameters() const override
    {
        return {ParameterSpec::boolean(QStringLiteral("roundScaleDown"), false,
                                       QStringLiteral("Use the power of two below the ideal scale (clips the largest "
                                                      "weights) instead of the one above (never clips)."))};
    }

    // Power-of-two scales only make sense for symmetric quantization: reject the rest early,
    // naming the offending parameter, before any work starts.
    Expected<void> validate(const LayerSettings &settings, std::int64_t rows, std::int64_t cols) const override
    {
        if (auto base = Technique::validate(settings, rows, cols); !base)
            return base;
        if (!settings.format.symmetric)
            return bitsmith::core::unexpected(
                fail(ErrorCode::InvalidArgument, QStringLiteral("pow2 quantization is symmetric only"))
                    .forParameter(QStringLiteral("symmetric"))
                    .withHint(QStringLiteral("set \"symmetric\": true (or --sym on the command line)")));
        return {};
    }

    // The work. The engine calls apply() once per group of linears sharing an input; each layer
    // carries its own settings (a recipe may give layers of one group different bits).
    Expected<void> apply(TechniqueContext &ctx) override
    {
        for (const LayerTarget &layer : ctx.group.layers) {
            if (layer.settings.technique != id())
                continue; // another technique handles this layer
            if (ctx.feedback.isCancelled())
                return bitsmith::core::unexpected(fail(ErrorCode::Cancelled, QStringLiteral("cancelled")));
            const bool roundDown = layer.settings.parameters.value(QStringLiteral("roundScaleDown")).toBool();
            ctx.results.setQuantized(layer, quantize(layer, roundDown), Execution::WeightOnly);
        }
        return {};
    }

private:
    static QuantizedTensor quantize(const LayerTarget &layer, bool roundDown)
    {
        QuantizedTensor q;
        q.rows = layer.rows;
        q.cols = layer.cols;
        q.format = layer.settings.format;
        const int half = 1 << (q.format.bits - 1); // the fixed zero point of symmetric codes
        const std::int64_t groups = q.groupsPerRow();
        const std::int64_t width = q.format.groupSize > 0 ? q.format.groupSize : q.cols;
        q.codes.resize(static_cast<std::size_t>(q.rows * q.cols));
        q.scales.resize(static_cast<std::size_t>(q.rows * groups));
        q.zeros.assign(q.scales.size(), static_cast<float>(half));
        // Per-tensor groups share one maximum; compute it once.
        float tensorMax = 0.0f;
        if (q.format.groupSize == -1)
            for (std::int64_t i = 0; i < q.rows * q.cols; ++i)
                tensorMax = std::max(tensorMax, std::fabs(layer.weight[i]));
        for (std::int64_t r = 0; r < q.rows; ++r) {
            const float *row = layer.weight + r * q.cols;
            for (std::int64_t g = 0; g < groups; ++g) {
                const std::int64_t begin = g * width, end = std::min(q.cols, begin + width);
                float m = tensorMax;
                if (q.format.groupSize != -1)
                    for (std::int64_t c = begin; c < end; ++c)
                        m = std::max(m, std::fabs(row[c]));
                // ideal scale m / (half - 1), rounded to a power of two
                const double ideal = m > 0 ? m / static_cast<double>(half - 1) : 1.0;
                const double e = roundDown ? std::floor(std::log2(ideal)) : std::ceil(std::log2(ideal));
                // clamp the exponent to what an fp16 scale can hold
                const float s = static_cast<float>(std::ldexp(1.0, static_cast<int>(std::clamp(e, -24.0, 15.0))));
                q.scales[static_cast<std::size_t>(r * groups + g)] = s;
                for (std::int64_t c = begin; c < end; ++c) {
                    const long v = std::lround(row[c] / s) + half;
                    q.codes[static_cast<std::size_t>(r * q.cols + c)] =
                        static_cast<std::uint8_t>(std::clamp<long>(v, 0, q.format.maxCode()));
                }
            }
        }
        return q;
    }
};

// (3) The plugin's root object: Qt instantiates it when the library is loaded. FILE names the
// metadata JSON that bitsmith_add_plugin() generated.
class Pow2Factory final : public QObject, public TechniqueFactory
{
    Q_OBJECT
    Q_PLUGIN_METADATA(IID BITSMITH_TECHNIQUE_IID FILE "plugin.json")
    Q_INTERFACES(bitsmith::core::TechniqueFactory)

public:
    std::unique_ptr<Technique> create() const override { return std::make_unique<Pow2Technique>(); }
};

} // namespace

#include "pow2technique.moc"

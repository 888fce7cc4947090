// technique.h: the plugin SDK. A compression technique (quantizer, pruner, ...) implements
// Technique; its plugin exports a TechniqueFactory that makes a fresh instance per run.
//
// The engine (core/compression.h) walks the model block by block and hands a technique one
// LayerGroup at a time: the linears that share one input (q/k/v; o; gate/up; down), their
// editable f32 weights, the op producing that input (so activation scales can be folded into
// it), and, if the technique asks for it, calibration statistics of that input computed on the
// outputs of the already-compressed blocks before it (sequential calibration).
//
// Plugins link only bitsmith_core and include only core/sdk/*.h plus the value types those
// include. See plugins/example-pow2 for a fully commented example.
#pragma once

#include "core/error.h"
#include "core/feedback.h"
#include "core/model.h"
#include "core/modelconfig.h"
#include "core/quant/quantizedtensor.h"
#include "core/sdk/parameters.h"

#include <QObject>
#include <QString>
#include <QtPlugin>

#include <Eigen/Core>

#include <algorithm>
#include <memory>
#include <optional>
#include <span>
#include <vector>

namespace bitsmith::core {

// Bumped whenever a change to these headers breaks plugins built against the old ones.
// 2: LayerSettings gained sparsity/pattern (layout change), ResultSink gained setPruned.
constexpr int kSdkApiVersion = 2;

enum class TechniqueCategory { Quantization, Pruning, Distillation };
QString categoryName(TechniqueCategory c); // "quantization", ...

// Where zeros may go when a layer is pruned. n:m (semi-structured, e.g. 2:4): every m
// consecutive inputs of a row keep at most n nonzeros; m == 0: unstructured (anywhere).
struct SparsityPattern
{
    int n = 0;
    int m = 0;
    bool isNM() const { return m > 0; }
    // "unstructured" or "N:M".
    QString name() const;
    // Parses "unstructured" (or "") and "N:M" with 0 < N < M <= 64; nullopt otherwise.
    static std::optional<SparsityPattern> parse(const QString &text);
    bool operator==(const SparsityPattern &) const = default;
};

// What the recipe resolved for one layer.
struct LayerSettings
{
    QString technique; // plugin id; "none" keeps the layer dense
    QuantFormat format;
    ParameterValues parameters; // already checked against the technique's schema, defaults filled
    double sparsity = 0.0;      // fraction of the weights a pruning technique removes (unstructured)
    SparsityPattern pattern;    // N:M pattern (then the fraction removed is 1 - N/M)
    // The fraction of zeros the settings ask for.
    double targetSparsity() const
    {
        return pattern.isNM() ? 1.0 - static_cast<double>(pattern.n) / pattern.m : sparsity;
    }
};

// One linear layer handed to a technique. `weight` is the current f32 matrix [rows = out,
// cols = in], editable in place (e.g. AWQ scales columns); the technique reports its result
// through ResultSink.
struct LayerTarget
{
    QString name; // "model.layers.3.mlp.down_proj"
    WeightRole role = WeightRole::LinearQ;
    int block = -1;
    float *weight = nullptr;
    std::int64_t rows = 0;
    std::int64_t cols = 0;
    const float *bias = nullptr;
    LayerSettings settings;
};

// Statistics of one group's input over the calibration tokens.
class CalibrationStats
{
public:
    virtual ~CalibrationStats() = default;
    virtual std::int64_t tokens() const = 0;   // rows seen
    virtual std::int64_t features() const = 0; // input width
    // H = (2/n) Σ x xᵀ in double (GPTQ's Hessian).
    virtual const Eigen::MatrixXd &hessian() const = 0;
    // Per input channel: mean |x|, mean x², max |x|.
    virtual const std::vector<double> &meanAbs() const = 0;
    virtual const std::vector<double> &meanSquare() const = 0;
    virtual const std::vector<double> &maxAbs() const = 0;
    // A sample of input rows (row-major [sampleRows, features]) for searches that need X itself.
    virtual const std::vector<float> &samples() const = 0;
    virtual std::int64_t sampleRows() const = 0;
};

// The op that produces a group's input, where per-input-channel scales can be folded:
// a norm (x / s folds into its weight) or a linear (its rows scale by 1/s).
struct InputProducer
{
    enum class Kind { None, Norm, Linear };
    Kind kind = Kind::None;
    QString name;          // tensor name of the norm weight or the linear ("...up_proj")
    float *data = nullptr; // norm weight [cols] or linear weight [rows, cols]
    std::int64_t rows = 0;
    std::int64_t cols = 0;
    // A norm applied as (offset + weight) (Gemma: 1): folding keeps that form.
    float offset = 0.0f;
    // A producing linear that is already compressed must not be changed any more (its stored
    // form would go stale): techniques must not fold into it.
    bool compressed = false;
};

struct LayerGroup
{
    int block = -1;
    WeightRole input = WeightRole::LinearQ; // which input: LinearQ (q/k/v), LinearO, LinearGate (gate/up), LinearDown
    std::vector<LayerTarget> layers;
    InputProducer producer;
    const CalibrationStats *calibration = nullptr; // set when the technique needs calibration
};

class ResultSink
{
public:
    virtual ~ResultSink() = default;
    // The layer's compressed weights (the engine also writes their dequantized values back into
    // the working model, so later blocks calibrate on the compressed model).
    virtual void setQuantized(const LayerTarget &layer, QuantizedTensor weights, Execution execution) = 0;
    // A non-quantized tensor the technique changed in place (a norm weight after folding).
    virtual void markModified(const QString &tensorName) = 0;
    // The layer's pruned dense weights (rows * cols, zeros where pruned, other weights possibly
    // updated). The engine writes them into the working model, records the layer as pruned and
    // reports its sparsity. The default (for sinks that only collect) writes them in place.
    virtual void setPruned(const LayerTarget &layer, std::span<const float> weights)
    {
        std::copy(weights.begin(), weights.end(), layer.weight);
    }
};

struct TechniqueContext
{
    const ModelConfig &config;
    LayerGroup &group;
    ResultSink &results;
    Feedback &feedback;
};

class Technique
{
public:
    virtual ~Technique() = default;
    virtual QString id() const = 0;          // "rtn", "gptq": used in recipes and on the CLI
    virtual QString displayName() const = 0; // "Round to nearest"
    virtual TechniqueCategory category() const = 0;
    virtual QString description() const = 0; // one paragraph for tooltips and --help
    virtual QList<ParameterSpec> parameters() const = 0;
    // Whether apply() needs LayerGroup::calibration.
    virtual bool needsCalibration() const { return false; }
    // Checks one layer's settings before any work starts (the default accepts 2..8 bits and
    // group sizes that fit the layer). Errors should name the parameter.
    virtual Expected<void> validate(const LayerSettings &settings, std::int64_t rows, std::int64_t cols) const;
    // Compresses the layers of one group whose settings name this technique.
    virtual Expected<void> apply(TechniqueContext &context) = 0;
};

// Helpers for techniques -------------------------------------------------------------------

// The layers of `group` whose settings name technique `id`.
std::vector<LayerTarget *> layersUsing(LayerGroup &group, const QString &id);

// Whether per-input-channel scales can be folded for `count` layers of `group`: they must be all
// of the group's layers (the rescaled input reaches every one of them), and the producer must be a
// norm, or a linear with one row per input channel that is not compressed yet.
bool canFoldInputScales(const LayerGroup &group, std::size_t count);

// Rescales without changing what the group computes: the producer's output channel j is divided by
// s[j] (norm weight, or linear row) and input column j of every layer of the group is multiplied
// by s[j]. Marks the producer as modified. Requires canFoldInputScales().
void foldInputScales(LayerGroup &group, std::span<const float> s, ResultSink &results);

// The interface a plugin's root object implements.
class TechniqueFactory
{
public:
    virtual ~TechniqueFactory() = default;
    virtual std::unique_ptr<Technique> create() const = 0;
};

} // namespace bitsmith::core

#define BITSMITH_TECHNIQUE_IID "org.bitsmith.TechniqueFactory/1"
Q_DECLARE_INTERFACE(bitsmith::core::TechniqueFactory, BITSMITH_TECHNIQUE_IID)

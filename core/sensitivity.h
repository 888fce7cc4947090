// sensitivity.h: per-layer sensitivity — what compressing ONLY one linear layer with one
// candidate setting does to the model's loss, KL divergence and perplexity on evaluation text —
// and cheap proxies of it that need no evaluation pass.
//
// Fast path: the original model is run once over the evaluation windows, caching the hidden state
// at the input of every block and the original next-token log-probabilities. A layer of block b
// is then measured by restoring the cached state at block b and running only blocks b..L-1 and
// the head, on a mutable working copy (Eigen kernels read its weights live) whose one layer
// holds the quantized weights for the duration of the measurement. GPTQ Hessians and the
// activation statistics come from calibration inputs of the ORIGINAL model, collected once per
// input group (q/k/v share one, gate/up one) and reused for every setting.
//
// Proxies per layer × setting (ΔW = dequantized − original):
//   relativeError   ‖ΔW‖² / ‖W‖²
//   hessianError    Σ_ij diag(H)_j ΔW_ij²    (H = (2/n) Σ x xᵀ of the calibration inputs)
//   activationError Σ_j mean(x_j²) Σ_i ΔW_ij² (llama.cpp's imatrix weighting)
// (with H as defined, hessianError = 2 · activationError; both are kept for the table users read.)
#pragma once

#include "core/error.h"                 // Expected
#include "core/feedback.h"              // Feedback
#include "core/model.h"                 // Model
#include "core/quant/quantizedtensor.h" // QuantFormat, QuantizedTensor

#include <QString>

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

namespace bitsmith::core {

class Transformer;
class InputStatistics;

// One candidate: a technique ("rtn" or "gptq") and its format.
struct SensitivitySetting
{
    QString technique;
    QuantFormat format;
    // "rtn:w4g128", "rtn:w8" (per-channel), "gptq:w3g64"
    QString label() const;
};

// Parses "rtn:w2g64,rtn:w3,gptq:w4g128,rtn:w8" (METHOD:wBITS[gGROUP]; no g = per channel).
// Errors name the parameter "candidates" and the bad item.
Expected<std::vector<SensitivitySetting>> parseSensitivitySettings(const QString &spec);

struct SensitivityOptions
{
    int ctx = 128;            // evaluation window length (tokens)
    int windows = 4;          // evaluation windows (the first ones of the text)
    int calibSequences = 32;  // calibration sequences for Hessians / activation statistics
    int calibLength = 128;    // tokens per calibration sequence
    std::uint64_t seed = 0;
    int naiveSamples = 0;     // > 0: also time this many layer×setting pairs the naive way
};

struct SensitivityResult
{
    std::vector<QString> layers;              // layer names ("model.layers.0.self_attn.q_proj")
    std::vector<std::int64_t> parameters;     // per layer
    std::vector<SensitivitySetting> settings;
    // Row-major [layer][setting]:
    std::vector<double> bytes, deltaLoss, kl, perplexity, relativeError, hessianError, activationError;
    double baseLoss = 0;        // mean NLL of the original model on the evaluation windows
    double basePerplexity = 0;
    int ctx = 0;
    int windows = 0;
    int calibSequences = 0;
    int calibLength = 0;
    std::uint64_t seed = 0;
    QString modelHash;
    QString modelFolder; // where the model was loaded from (informational; set by the caller)
    QString evalText;    // evaluation / calibration text files (informational; set by the caller)
    QString calibText;
    double seconds = 0;         // the whole sweep
    double measureSeconds = 0;  // the cached measurements only
    double naiveSecondsEstimate = 0; // naive full forwards for all pairs, extrapolated (0 if not timed)

    double at(const std::vector<double> &m, std::size_t layer, std::size_t setting) const
    {
        return m[layer * settings.size() + setting];
    }
};

// The loss / KL / perplexity of one perturbed model on the evaluation windows.
struct LayerMeasurement
{
    double meanNll = 0;
    double deltaLoss = 0;
    double kl = 0;
    double perplexity = 0;
};

class SensitivityAnalysis
{
public:
    // Runs the original model over the evaluation windows (caching block inputs and log-probs) and
    // over the calibration sequences (input statistics). `calibTokens` may be empty: then GPTQ
    // settings and the Hessian/activation proxies are unavailable (proxies are NaN).
    // Errors: too few evaluation tokens (parameter "windows"), Cancelled.
    static Expected<std::unique_ptr<SensitivityAnalysis>> create(std::shared_ptr<const Model> model,
                                                                 std::span<const std::int32_t> evalTokens,
                                                                 std::span<const std::int32_t> calibTokens,
                                                                 const SensitivityOptions &options,
                                                                 Feedback *feedback = nullptr);
    ~SensitivityAnalysis();

    int layerCount() const { return static_cast<int>(m_layers.size()); }
    const QString &layerName(int layer) const;
    double baseLoss() const { return m_baseLoss; }

    // Quantizes one layer's original weights under a setting.
    Expected<QuantizedTensor> quantize(int layer, const SensitivitySetting &setting) const;

    // Loss/KL/perplexity with layer `layer` replaced by `weights` (rows × cols f32), the fast way
    // (from the cached block input) and the naive way (a full forward over every window).
    Expected<LayerMeasurement> measureCached(int layer, const float *weights);
    Expected<LayerMeasurement> measureNaive(int layer, const float *weights);

    // The full sweep over every layer × setting, with proxies. Progress and cancellation via
    // `feedback` (checked between measurements).
    Expected<SensitivityResult> run(const std::vector<SensitivitySetting> &settings, Feedback *feedback = nullptr);

private:
    SensitivityAnalysis() = default;
    struct Layer
    {
        QString name;
        QString tensor;
        WeightRole role = WeightRole::LinearQ;
        int block = 0;
        std::int64_t rows = 0;
        std::int64_t cols = 0;
    };
    Expected<LayerMeasurement> measure(int layer, const float *weights, bool naive);

    std::shared_ptr<const Model> m_original;
    std::shared_ptr<Model> m_work;
    std::unique_ptr<Transformer> m_transformer;
    SensitivityOptions m_options;
    std::vector<Layer> m_layers;
    std::vector<std::vector<std::int32_t>> m_windows;
    std::vector<std::vector<float>> m_blockInputs; // [block][window * ctx * hidden]
    std::vector<float> m_baseLogProbs;             // [window][ctx-1][vocab]
    std::vector<float> m_baseProbs;                // the same as probabilities (spares the KL an exp)
    std::vector<std::unique_ptr<InputStatistics>> m_stats; // [block * 4 + input group]
    double m_baseLoss = 0;
    double m_setupSeconds = 0;
};

} // namespace bitsmith::core

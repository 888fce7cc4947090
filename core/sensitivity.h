// sensitivity.h: per-layer sensitivity — what compressing ONLY one linear layer with one
// candidate setting does to the model's loss, KL divergence and perplexity on evaluation text —
// and cheap proxies of it that need no evaluation pass.
//
// Fast path: the original model is run once over the evaluation windows, caching, per block, the
// hidden state at its input, after its attention half, and the inputs of o_proj and down_proj,
// plus the original logits and probabilities. A layer of block b is then measured from the latest
// cached state it does not affect.
// All linears run on oneDNN kernels over the original weights, prepacked once; the measured
// layer's kernel adds ΔW·x (ΔW = quantized − original) for the duration of the measurement, so
// everything it does not change is the base pass's arithmetic (bit-identical up to the summation
// order of vectorised loops over buffers of another alignment: ~1e-9 in the loss). Restart points:
//   q/k/v      block b from its input, then blocks b+1.. and the head
//   o          mid-state + ΔW·att, the MLP half of block b, then b+1..
//   gate/up    the MLP half of block b from the cached mid-state, then b+1..
//   down       block b's output + ΔW·act (the residual is additive), then b+1..
// The scores use the logit change d = z' − z against the cached original: with p the original
// probabilities, KL(p‖q) = log Σ p·e^d − Σ p·d and ΔNLL = log Σ p·e^d − d[target], which stay
// accurate in f32 for the tiny changes of 8-bit settings (no difference of two large numbers).
//
// GPTQ Hessians and the activation statistics come from calibration inputs of the ORIGINAL
// model, collected once per input group (q/k/v share one, gate/up one) and reused for every
// setting.
//
// The naive way, timed on a few layers for the report: a full forward over the windows per layer
// and setting with the same kernels ("forward only"), and the per-cell script that also reloads
// the model and, for GPTQ, re-runs the calibration up to that layer.
//
// Proxies per layer × setting (ΔW = dequantized − original):
//   relativeError   ‖ΔW‖² / ‖W‖²
//   hessianError    Σ_ij diag(H)_j ΔW_ij²    (H = (2/n) Σ x xᵀ of the calibration inputs)
//   activationError Σ_j mean(x_j²) Σ_i ΔW_ij² (llama.cpp's imatrix weighting)
//   hutchinsonError tr(H_W)/n · ‖ΔW‖²        (HAWQ-v2's Ω; H_W the Hessian of the evaluation loss
//                                             w.r.t. the layer's n weights, tr(H_W) estimated per
//                                             layer by Hutchinson: E[vᵀHv] over Rademacher v, with
//                                             vᵀHv = (L(W+εv) + L(W−εv) − 2L(W)) / ε² measured on the
//                                             cached path; ε·‖v‖ = 0.3% of ‖W‖)
// (with H as defined, hessianError = 2 · activationError; both are kept for the table users read.)
#pragma once

#include "core/error.h"                 // Expected
#include "core/feedback.h"              // Feedback
#include "core/model.h"                 // Model
#include "core/quant/quantizedtensor.h" // QuantFormat, QuantizedTensor
#include "core/recipe.h"                // RecipeEntry
#include "core/sdk/technique.h"         // SparsityPattern

#include <QString>

#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <vector>

namespace bitsmith::core {

class Transformer;
class InputStatistics;
class DeltaLinear;

// One candidate: a technique and its format — quantization ("rtn", "gptq"), pruning ("magnitude",
// "wanda", "sparsegpt": a sparsity or an N:M pattern), or both ("sparsegpt" with bits).
struct SensitivitySetting
{
    QString technique;
    QuantFormat format;
    double sparsity = 0.0;   // unstructured fraction removed (pruning)
    SparsityPattern pattern; // N:M (pruning)
    bool prunes() const { return sparsity > 0 || pattern.isNM(); }
    bool quantizes() const { return format.bits > 0; }
    // "rtn:w4g128", "rtn:w8" (per-channel), "gptq:w3g64", "wanda:s50", "magnitude:2:4",
    // "sparsegpt:2:4+w4g128"
    QString label() const;
};

// Parses "rtn:w2g64,rtn:w3,gptq:w4g128,rtn:w8,wanda:s50,sparsegpt:2:4+w4g128": METHOD:PART[+PART]
// with PART one of wBITS[gGROUP] (no g = per channel), sPERCENT (unstructured sparsity), N:M.
// rtn/gptq take only wBITS; magnitude/wanda only a sparsity or N:M; sparsegpt a sparsity or N:M
// and optionally wBITS. Errors name the parameter "candidates" and the bad item.
Expected<std::vector<SensitivitySetting>> parseSensitivitySettings(const QString &spec);

struct SensitivityOptions
{
    int ctx = 128;            // evaluation window length (tokens)
    int windows = 4;          // evaluation windows (the first ones of the text)
    int calibSequences = 32;  // calibration sequences for Hessians / activation statistics
    int calibLength = 128;    // tokens per calibration sequence
    std::uint64_t seed = 0;
    int naiveSamples = 0;     // > 0: also time this many layers the naive way
    int hutchinsonProbes = 2; // Rademacher probes per layer for the Hessian trace (0 = skip)
};

struct SensitivityResult
{
    std::vector<QString> layers;              // layer names ("model.layers.0.self_attn.q_proj")
    std::vector<std::int64_t> parameters;     // per layer
    std::vector<SensitivitySetting> settings;
    // Row-major [layer][setting]:
    std::vector<double> bytes, deltaLoss, kl, perplexity, relativeError, hessianError, activationError, hutchinsonError;
    std::vector<double> hutchinsonTrace; // per layer: estimated tr(H_W) (NaN when not computed)
    int hutchinsonProbes = 0;
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
    double quantizeSeconds = 0; // quantizing every cell (the same in both ways)
    double hutchinsonSeconds = 0;
    double naiveSecondsEstimate = 0; // naive full forwards for all pairs, extrapolated (0 if not timed)
    // The per-cell script: reload + (GPTQ) calibration of the layer + quantize + full forward, for
    // every cell, extrapolated (0 if not timed). Compare with `seconds`.
    double naiveScriptSecondsEstimate = 0;
    double naiveTimingSeconds = 0; // spent timing the naive ways (part of `seconds`)

    double at(const std::vector<double> &m, std::size_t layer, std::size_t setting) const
    {
        return m[layer * settings.size() + setting];
    }
};

// The recipe entry that gives layer `name` this setting (technique, bits/group, sparsity/pattern,
// and SparseGPT's `quantize` parameter).
RecipeEntry recipeEntryFor(const QString &name, const SensitivitySetting &setting);
// Whether the setting's technique needs calibration statistics (GPTQ, Wanda, SparseGPT).
bool needsCalibration(const SensitivitySetting &setting);

// Spearman's rank correlation of two equally long series (average ranks for ties; pairs where
// either value is NaN are skipped). NaN when fewer than 3 pairs remain or a series is constant.
double spearmanCorrelation(const std::vector<double> &a, const std::vector<double> &b);

// How well each proxy ranks the cells like a measured metric: one entry per proxy.
struct ProxyCorrelation
{
    QString proxy; // "relative_error", "hessian_error", "activation_error", "hutchinson_error"
    double withDeltaLoss = 0;
    double withKl = 0;
};
std::vector<ProxyCorrelation> proxyCorrelations(const SensitivityResult &r);

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

    // Quantizes one layer's original weights under a quantization setting.
    Expected<QuantizedTensor> quantize(int layer, const SensitivitySetting &setting) const;

    // Any setting (quantization, pruning, both): the layer's new f32 weights and the bytes it
    // takes. Pruned values keep the checkpoint's dtype; the positions cost a bitmap (1 bit per
    // weight) or, for N:M, log2(M) bits per kept weight, whichever is smaller.
    struct Compressed
    {
        std::vector<float> weights;
        double bytes = 0;
    };
    Expected<Compressed> compress(int layer, const SensitivitySetting &setting) const;

    // Loss/KL/perplexity with layer `layer` replaced by `weights` (rows × cols f32), the fast way
    // (from the cached block input) and the naive way (a full forward over every window).
    Expected<LayerMeasurement> measureCached(int layer, const float *weights);
    Expected<LayerMeasurement> measureNaive(int layer, const float *weights);

    // Hutchinson estimate of the trace of the evaluation loss's Hessian w.r.t. one layer's
    // weights, from `probes` Rademacher directions (seeded by options.seed and the layer), each
    // scaled so that ‖εv‖ = relativeStep·‖W‖.
    Expected<double> hessianTrace(int layer, int probes, double relativeStep = kHutchinsonStep);
    // 0.3%: on a tiny random model (tst_sensitivity) 1% already biases the estimate by 4-12%
    // (higher-order terms); 0.3% agrees with the coordinate-wise exact trace within 2%.
    static constexpr double kHutchinsonStep = 0.003;

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
        int expert = -1;
        std::int64_t rows = 0;
        std::int64_t cols = 0;
        DeltaLinear *kernel = nullptr; // its kernel in m_fast
    };
    Expected<LayerMeasurement> measure(int layer, const float *weights, bool naive);
    // Adds window w's scores (Σ ΔNLL, Σ KL over its ctx-1 positions) for perturbed logits.
    void score(std::size_t w, const std::vector<float> &logits, double &dnll, double &kl, std::vector<float> &tmp) const;

    std::shared_ptr<const Model> m_original;
    std::unique_ptr<Transformer> m_fast; // over the original (oneDNN prepacked), with ΔW hooks per layer
    SensitivityOptions m_options;
    std::vector<Layer> m_layers;
    std::vector<std::vector<std::int32_t>> m_windows;
    // Per block, all windows concatenated ([window * ctx, width]):
    std::vector<std::vector<float>> m_blockInputs; // block input (hidden)
    std::vector<std::vector<float>> m_mids;        // after the attention half (hidden)
    std::vector<std::vector<float>> m_oInputs;     // o_proj input (heads * headDim)
    std::vector<std::vector<float>> m_downInputs;  // down_proj input (intermediate)
    std::vector<float> m_finalHidden;              // the last block's output
    std::vector<float> m_baseLogits;               // [window][ctx-1][vocab]
    std::vector<float> m_baseProbs;                // softmax of the same
    std::vector<double> m_baseLse;                 // per scored position: log Σ exp(z)
    std::vector<float> m_baseProbSum;              // per scored position: Σ p in f32 (≈ 1)
    std::vector<std::vector<std::int32_t>> m_calibSequences;
    std::vector<std::unique_ptr<InputStatistics>> m_stats; // [block * 4 + input group], then 2 per expert (statsIndex)
    // Large models keep only per-channel statistics for all blocks (full Hessians of every block
    // would not fit); the Hessian a GPTQ/SparseGPT candidate needs is then gathered for its input
    // when asked, one input at a time (the last one kept).
    bool m_lazyHessians = false;
    mutable std::mutex m_lazyMutex;
    mutable int m_lazyIndex = -1;
    mutable std::shared_ptr<InputStatistics> m_lazyStats;
    // Statistics with the Hessian for the layer's input (null without calibration text).
    Expected<std::shared_ptr<const InputStatistics>> hessianStats(int block, int expert, WeightRole role) const;
    double m_baseLoss = 0;
    double m_setupSeconds = 0;
};

} // namespace bitsmith::core

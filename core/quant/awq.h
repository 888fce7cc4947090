// awq.h: AWQ (Lin et al., "AWQ: Activation-aware Weight Quantization for LLM Compression and
// Acceleration") — protects the weights of salient input channels (large mean |x|) by scaling
// them up before quantization and the activations down by the same factor, then clips each
// group's weight range where that lowers the output error.
//
// Definitions (REFERENCE.md, tools/quant_reference.py):
//   scale search, for linears sharing one input X [n, in]:
//     s_x = mean_t |x_t| per input channel; for α = k/grid, k = 0..grid-1 (grid = 20):
//     s = max(s_x^α, 1e-4), s /= sqrt(max(s)·min(s)); W' = Q(W·diag(s))·diag(1/s);
//     loss(α) = Σ_linears mean((X·Wᵀ − X·W'ᵀ)²); the first α with the smallest loss wins.
//     α = 0 gives s = 1, i.e. plain RTN, so the picked loss is never above RTN's.
//   clip search, per (output row, group) of one linear: for c = max|w_g|·(1 − i/20), i < 10,
//     w_c = clamp(w_g, −c, c); err = mean_t (x_t,g·w_g − x_t,g·Q(w_c))²; the first c with the
//     smallest error wins.
// Q is Bitsmith's quantizer (quantizer.h: GPTQ-style min-max with xmin ≤ 0 ≤ xmax and fp16
// scales), not AWQ's own pseudo_quantize_tensor (which uses [min, max] without 0 and fp32
// scales). s_x and s are computed in double and rounded to float once.
//
// Simplification: the scale search scores the linears' own outputs X·W'ᵀ; the AWQ reference
// scores the output of the enclosing block (the attention for q/k/v, the MLP for gate/up).
// Each linear's error is measured over all n rows of X through the Gram matrix XᵀX (when
// n >= in) or X directly, so n can be large (e.g. 128 sequences x 512 tokens) at O(in²) memory.
//
// Folding (the caller's job): X·Wᵀ = (X·diag(1/s))·(W·diag(s))ᵀ, so the preceding norm weight
// (or the preceding linear's output rows, e.g. v_proj for o_proj, up_proj for down_proj) is
// divided by s and every linear that reads X gets its columns multiplied by s.
// The AWQ reference skips the clip search for q/k (their error is amplified by the attention
// softmax); that, too, is the caller's choice.
#pragma once

#include "core/error.h"                 // Expected
#include "core/feedback.h"              // Feedback
#include "core/model.h"                 // MatrixView
#include "core/quant/quantizedtensor.h" // QuantFormat, QuantizedTensor

#include <span>
#include <vector>

namespace bitsmith::core {

struct AwqOptions
{
    int grid = 20;      // α = k / grid, k = 0 .. grid-1
    int clipGrid = 20;  // clip candidates max·(1 − i / clipGrid) ...
    int clipSteps = 10; // ... for i < clipSteps (AWQ's max_shrink 0.5)
};

struct AwqScaleResult
{
    std::vector<float> scales;        // s, one per input channel
    double alpha = 0.0;               // the picked α
    double loss = 0.0;                // Σ_linears output MSE at the picked α
    std::vector<double> lossPerAlpha; // grid entries; [0] is plain RTN's
};

// The scale search over the linears (each [out_l, in], row-major) that read X [n, in].
// Errors: InvalidArgument (bad format, NaN/Inf, no linears, empty X, grid < 1), Mismatch
// (a linear's input width differs from X's), Cancelled.
Expected<AwqScaleResult> awqSearchScales(MatrixView x, std::span<const MatrixView> linears, const QuantFormat &format,
                                         const AwqOptions &options = {}, Feedback *feedback = nullptr);

// The clip search for one linear W [out, in] reading X [n, in] (pass the already scaled
// W·diag(s) and X·diag(1/s) after a scale search). Returns out * groupsPerRow max-abs clip
// values for quantizeRtn's `clip` (groupsPerRow = 1 for per-channel formats). Per-tensor
// formats are Unsupported (one tensor-wide range couples all rows).
Expected<std::vector<float>> awqSearchClip(MatrixView x, MatrixView w, const QuantFormat &format,
                                           const AwqOptions &options = {}, Feedback *feedback = nullptr);

// m·diag(s) (divide = false) or m·diag(1/s) (divide = true), row-major, in float.
std::vector<float> scaleColumns(MatrixView m, std::span<const float> s, bool divide = false);

struct AwqLinearResult
{
    QuantizedTensor q;       // quantizes W·diag(s): its inputs must be X·diag(1/s)
    std::vector<float> clip; // the clip values used (empty without the clip search)
};

// Scales W by s (from awqSearchScales), optionally runs the clip search with X·diag(1/s), and
// quantizes with round-to-nearest. X is only read for the clip search.
Expected<AwqLinearResult> awqQuantizeLinear(MatrixView x, MatrixView w, std::span<const float> scales,
                                            const QuantFormat &format, bool clipSearch,
                                            const AwqOptions &options = {}, Feedback *feedback = nullptr);

} // namespace bitsmith::core

// smoothquant.h: SmoothQuant (Xiao et al., "SmoothQuant: Accurate and Efficient Post-Training
// Quantization for Large Language Models") for W8A8 — migrates activation outliers into the
// weights with per-input-channel factors s_j, then quantizes the weights per output channel to
// int8. The activation side (per-token dynamic int8) is a kernel concern, not done here.
//
// Definitions (REFERENCE.md; the SmoothQuant repository's smooth_ln_fcs):
//   s_j = max(max_t |X_tj|^α / max(max_l,r |W_l[r, j]|, 1e-5)^(1−α), 1e-5)
// over all linears l that read X (q/k/v, or gate/up). Folding, the caller's job:
// X·Wᵀ = (X·diag(1/s))·(W·diag(s))ᵀ — divide the preceding norm weight by s, multiply every
// reading linear's columns by s (scaleColumns in awq.h).
//
// Weights: QuantFormat{8, 0, true}, Bitsmith's symmetric quantizer (quantizer.h): scale =
// 2·max|w_r|/255 stored in fp16, zero 128, codes 0..255, so code − 128 is the int8 value in
// [−128, 127]. SmoothQuant's own scale is max|w_r|/127 with codes in [−127, 127]; the range
// differs by 0.4% and the asymmetric code −128 is available.
#pragma once

#include "core/error.h"                 // Expected
#include "core/model.h"                 // MatrixView
#include "core/quant/quantizedtensor.h" // QuantizedTensor

#include <span>
#include <vector>

namespace bitsmith::core {

// max_t |X_tj| per column of X [n, in] (e.g. HessianAccumulator::absMax() over a whole
// calibration run gives the same without keeping X).
std::vector<float> columnAbsMax(MatrixView x);

// The smoothing factors s (one per input channel) for the linears (each [out_l, in]) that share
// an input whose per-channel max |x| is activationAbsMax. α in [0, 1] (0.5 usual, 0.85 for
// Llama-2-7B in the paper). Errors: InvalidArgument (α, negative/NaN statistics, NaN weights,
// no linears; parameters "alpha", "activations", "weights", "linears"), Mismatch (widths).
Expected<std::vector<float>> smoothQuantScales(std::span<const float> activationAbsMax,
                                               std::span<const MatrixView> linears, double alpha = 0.5);

// Per-output-channel symmetric int8 quantization of a (smoothed) weight: quantizeRtn with
// QuantFormat{8, 0, true}.
Expected<QuantizedTensor> quantizeInt8PerChannel(MatrixView w);

} // namespace bitsmith::core

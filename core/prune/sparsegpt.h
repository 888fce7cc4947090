// sparsegpt.h: SparseGPT (Frantar & Alistarh, "SparseGPT: Massive Language Models Can Be
// Accurately Pruned in One-Shot") — prunes a linear layer column by column with the inverse
// Hessian of its calibration inputs, compensating each removed weight's error in the columns not
// yet processed (the GPTQ update), optionally quantizing the kept weights at the same time.
//
// The algorithm is the reference's fasterprune (REFERENCE.md, mirrored by tools/prune_reference.py):
// dead columns (diag(H) = 0: H_ii = 1, W[:, i] = 0), damping dampPercent · mean diag(H),
// Hinv = upper Cholesky factor of (H + damp·I)^-1, blocks of `blockSize` columns;
//   unstructured: at the start of each block, the mask of the whole block (all rows) is chosen
//     from the score w² / diag(Hinv)², pruning floor(sparsity · rows · blockCols) weights
//     (the reference prunes those <= the k-th smallest, i.e. one more; we prune exactly k,
//     ties broken by row-major index);
//   N:M: when column i (i % M == 0 inside the block) is reached, the M - N lowest scores of
//     columns i..i+M-1 of each row are pruned, scores taken from the weights updated so far;
//   then per column: q = 0 where pruned, else the (optionally quantized) weight; err = (w - q) / Hinv_ii;
//     later columns of the block -= err ⊗ Hinv[i, i+1:]; after the block, lazy update of the rest.
// Joint quantization: min-max parameters per row (groupSize 0 or -1: once from the weights after
// dead-column zeroing; groupSize g > 0: when a group's first column is reached, from the weights
// as they are at the start of the current block, as core/quant/gptq does). A pruned weight's code is
// the zero point, so it dequantizes to exactly 0.
// Arithmetic is in double throughout (layers handed to it are at most a few thousand wide).
#pragma once

#include "core/error.h"                 // Expected
#include "core/feedback.h"              // Feedback
#include "core/model.h"                 // MatrixView
#include "core/quant/quantizedtensor.h" // QuantFormat, QuantizedTensor
#include "core/sdk/technique.h"         // SparsityPattern

#include <Eigen/Dense>

#include <optional>
#include <vector>

namespace bitsmith::core {

struct SparseGptOptions
{
    double dampPercent = 0.01;
    int blockSize = 128;
    std::optional<QuantFormat> quantize; // joint quantization of the kept weights
};

struct SparseGptResult
{
    std::vector<float> weights;        // rows * cols, row-major: the pruned (and dequantized) result
    std::optional<QuantizedTensor> q;  // when quantizing
    double loss = 0.0;                 // Σ (w - q)² / Hinv_ii² / 2
    std::int64_t deadColumns = 0;
};

// Errors: InvalidArgument for bad sparsity/pattern ("sparsity", "pattern"), options
// ("dampPercent", "blockSize"), format ("bits", "group"), non-finite weights or Hessian, a Hessian
// that is not positive definite after damping ("dampPercent"); Mismatch for a Hessian of the wrong
// size; Cancelled.
Expected<SparseGptResult> sparseGptPrune(MatrixView w, const Eigen::MatrixXd &hessian, double sparsity,
                                         SparsityPattern pattern, const SparseGptOptions &options = {},
                                         Feedback *feedback = nullptr);

} // namespace bitsmith::core

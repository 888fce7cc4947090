// gptq.h: GPTQ (Frantar et al., "GPTQ: Accurate Post-Training Quantization for Generative
// Pre-trained Transformers") — quantizes a linear layer column by column, feeding each column's
// rounding error back into the not-yet-quantized columns through the inverse Hessian of the
// layer's calibration inputs — and the accumulator that builds that Hessian.
//
// The algorithm is the reference's fasterquant (REFERENCE.md, tools/quant_reference.py):
// dead columns, optional act-order permutation, 1% damping, Hinv = upper Cholesky factor of
// H^-1, blocks of 128 columns with lazy batch updates, group parameters recomputed on the fly.
// Hinv is computed as J·chol(J·H·J)^-1·J (J reverses the order), the same matrix as the
// reference's chol(chol_inverse(chol(H)), upper) with a quarter of the flops.
// Deliberate differences to the GPTQ repository (mirrored in tools/quant_reference.py):
//   - H, the damping and both Cholesky factorizations are in double (the repository: float32);
//     the weight updates stay in float, like the repository's, with Hinv rounded to float.
//   - Per-channel / per-tensor parameters are found after dead columns are zeroed (the
//     repository finds them before, so a dead column's weights can widen a row's range for
//     nothing: its input is always zero).
//   - The act-order sort is stable (ties keep column order) so that runs are reproducible.
//   - Scales are rounded to fp16 (see quantizer.h).
// Kept from the repository on purpose: a group's parameters are found, when its first column is
// reached, from the weights as they were at the start of the current 128-column block (with
// the lazy updates of earlier blocks but not the in-block updates of earlier columns); this only
// matters for groups that do not start at a block boundary (e.g. g64: every second group).
#pragma once

#include "core/error.h"                 // Expected
#include "core/feedback.h"              // Feedback
#include "core/model.h"                 // MatrixView
#include "core/quant/quantizedtensor.h" // QuantFormat, QuantizedTensor

#include <Eigen/Dense>

#include <cstdint>
#include <vector>

namespace bitsmith::core {

// Accumulates the GPTQ/SparseGPT Hessian H = (2/n) Σ x xᵀ of a linear layer's inputs over n
// calibration rows (tokens), as a running average: on a batch of t rows,
// H *= n/(n+t); H += (2/(n+t)) Σ_batch x xᵀ; n += t. Also keeps per-input-column statistics
// that other techniques need: mean |x| (AWQ), mean x² (llama.cpp imatrix, Wanda: ||X_j||₂² / n)
// and max |x| (SmoothQuant).
//
// n counts rows. The GPTQ repository counts sequences (its add_batch gets one [1, seq, d]
// tensor), which scales H by the sequence length; that does not change GPTQ's result (the
// damping is relative to mean diag(H)) but does change the absolute values and the loss.
//
// Precision: each batch's xᵀx is summed in float over chunks of at most 1024 rows (SSE float
// GEMM is twice as fast as double, and the rounding error over 1024 terms is ~1e-6 relative);
// the running average across chunks and batches is kept in double.
class HessianAccumulator
{
public:
    explicit HessianAccumulator(std::int64_t cols);

    // Adds `rows` rows of `cols` floats each (row-major, e.g. a [tokens, hidden] activation).
    // Add batches rather than single rows: each call costs O(cols²) on top of the product.
    void add(const float *x, std::int64_t rows);

    // The symmetric cols x cols Hessian (zero before the first add).
    const Eigen::MatrixXd &hessian() const { return m_h; }
    std::int64_t count() const { return m_count; }
    std::int64_t cols() const { return m_cols; }
    const std::vector<double> &meanAbs() const { return m_meanAbs; }
    const std::vector<double> &meanSquare() const { return m_meanSquare; }
    const std::vector<double> &absMax() const { return m_absMax; }

private:
    std::int64_t m_cols = 0;
    std::int64_t m_count = 0;
    Eigen::MatrixXd m_h;
    Eigen::MatrixXf m_chunk; // scratch for one chunk's xᵀx (lower triangle)
    std::vector<double> m_meanAbs;
    std::vector<double> m_meanSquare;
    std::vector<double> m_absMax;
};

struct GptqOptions
{
    double dampPercent = 0.01; // damping added to diag(H): dampPercent * mean(diag(H))
    int blockSize = 128;       // columns per lazy-batch block
    bool actOrder = false;     // quantize columns in order of descending diag(H)
    bool staticGroups = false; // find all group parameters up front, from the original weights
    bool mseSearch = false;    // MSE grid search for each group's range (see quantizer.h)
};

struct GptqResult
{
    // Codes in the original column order. With act-order and (non-static) groups, groups are
    // formed along the permuted order and q.groupIndex[c] gives column c's group (the GPTQ
    // g_idx); otherwise groupIndex is empty.
    QuantizedTensor q;
    // The GPTQ objective the reference prints: Σ (w - q)² / Hinv[i,i]² / 2 over all weights.
    double loss = 0.0;
    // Columns with diag(H) == 0, whose weights were set to zero.
    std::int64_t deadColumns = 0;
    // The act-order permutation (position -> original column); empty without act-order.
    std::vector<std::int32_t> permutation;
};

// Quantizes the [rows, cols] row-major weight `w` with the cols x cols Hessian `hessian`
// (e.g. HessianAccumulator::hessian()). Progress and cancellation go through `feedback` (may be
// null), checked after every block. Errors: InvalidArgument for a bad format ("bits", "group"),
// bad options ("dampPercent", "blockSize"), NaN/Inf in the weights or the Hessian; Mismatch for
// a Hessian of the wrong size; InvalidArgument naming "dampPercent" when H + damping is not
// positive definite; Cancelled.
Expected<GptqResult> gptqQuantize(MatrixView w, const Eigen::MatrixXd &hessian, const QuantFormat &format,
                                  const GptqOptions &options = {}, Feedback *feedback = nullptr);

} // namespace bitsmith::core

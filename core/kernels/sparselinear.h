// sparselinear.h: linear kernels over pruned weights — Bitsmith's own, since oneDNN 2.6 has no
// sparse matmul.
//   * 2:4 semi-structured (Sparse24Weights): per row, every 4 consecutive inputs keep at most 2
//     weights; stored as the 2 f32 values plus a 2-bit position each (cols/2 values and cols/16
//     bytes of indices per row: 0.53 of the dense bytes). Kernel: x is read in chunks of 32 inputs;
//     the 16 values of a chunk are multiplied with x gathered by in-lane permutes (vpermilps, which
//     reads the 2-bit positions directly) — no gathers, and the weights stream once (M = 1 is
//     memory-bound, so it runs up to ~1.9x faster than dense f32). AVX-512, AVX2 and scalar.
//   * CSR (CsrWeights): f32 values, 16-bit column indices, 32-bit row offsets (6 bytes per nonzero):
//     for high unstructured sparsity. M = 1: hardware gathers of x; M > 1: x transposed once per
//     call so that each nonzero is one broadcast FMA over the batch.
// Both compute exactly x · Wᵀ (+ b) up to f32 summation order. Above `denseAboveRows` rows of x a
// kernel hands the call to a dense oneDNN f32 kernel over the same (zero-filled) weights, where
// that is faster (see bench/bench_sparse.cpp).
#pragma once

#include "core/error.h"
#include "core/linear.h"
#include "core/quant/quantizedtensor.h"
#include "packedlinear.h" // KernelIsa, selectKernelIsa

#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

namespace bitsmith::core {

class Sparse24Weights
{
public:
    static constexpr std::int64_t kChunk = 32; // inputs per chunk (16 values + one 32-bit index word)
    // Errors: cols not a multiple of 32, a group of 4 with more than 2 nonzeros, non-finite values.
    // int8: the kept values are quantized symmetrically per row (scale = max |w| / 127, round to
    // nearest), so the kernel computes with those values (toDense() gives them back).
    static Expected<Sparse24Weights> fromDense(MatrixView w, bool int8 = false);
    // An 8-bit symmetric per-channel (or per-tensor) quantized tensor whose codes are 2:4 around
    // the zero point: int8 values code - 128 with the row's scale, exactly what it dequantizes to.
    // Errors: another format, act-order, not 2:4, cols not a multiple of 32.
    static Expected<Sparse24Weights> fromQuantized(const QuantizedTensor &q);
    std::int64_t rows() const { return m_rows; }
    std::int64_t cols() const { return m_cols; }
    bool isInt8() const { return m_int8; }
    void toDense(float *out) const; // rows * cols
    const float *values() const { return m_values.data(); }          // f32: rows * cols / 2
    const std::int8_t *values8() const { return m_values8.data(); }  // int8: rows * cols / 2
    const float *rowScales() const { return m_scales.data(); }       // int8: rows
    const std::uint32_t *indices() const { return m_indices.data(); } // rows * cols / 32
    std::int64_t bytes() const
    {
        return static_cast<std::int64_t>(m_values.size() * 4 + m_values8.size() + m_scales.size() * 4 + m_indices.size() * 4);
    }

private:
    std::int64_t m_rows = 0, m_cols = 0;
    bool m_int8 = false;
    std::vector<float> m_values;
    std::vector<std::int8_t> m_values8;
    std::vector<float> m_scales;
    std::vector<std::uint32_t> m_indices;
};

class CsrWeights
{
public:
    // Errors: more than 65536 columns, non-finite values.
    static Expected<CsrWeights> fromDense(MatrixView w);
    std::int64_t rows() const { return m_rows; }
    std::int64_t cols() const { return m_cols; }
    std::int64_t nonzeros() const { return static_cast<std::int64_t>(m_values.size()); }
    void toDense(float *out) const;
    const std::vector<std::uint32_t> &rowOffsets() const { return m_rowPtr; } // rows + 1
    const std::vector<std::uint16_t> &columns() const { return m_cols16; }
    const std::vector<float> &values() const { return m_values; }
    std::int64_t bytes() const { return nonzeros() * 6 + (m_rows + 1) * 4; }

private:
    std::int64_t m_rows = 0, m_cols = 0;
    std::vector<std::uint32_t> m_rowPtr;
    std::vector<std::uint16_t> m_cols16;
    std::vector<float> m_values;
};

struct SparseKernelOptions
{
    std::optional<KernelIsa> isa;       // nullopt: selectKernelIsa()
    std::int64_t denseAboveRows = -1;   // m above this runs on the dense fallback; -1: never
    MatrixView denseWeight;             // the zero-filled weight for the fallback (must outlive the kernel)
};

// bias: null or outFeatures floats that outlive the kernel. description(): "sparse 2:4 f32 (avx512)"
// or "sparse 2:4 int8 (avx512)" (int8 values: f32 activations, values widened in the kernel).
std::unique_ptr<LinearKernel> makeSparse24Linear(std::shared_ptr<const Sparse24Weights> w, const float *bias,
                                                 const SparseKernelOptions &options = {});
std::unique_ptr<LinearKernel> makeCsrLinear(std::shared_ptr<const CsrWeights> w, const float *bias,
                                            const SparseKernelOptions &options = {});

// The run-time choice for a dense-stored weight (Transformer): 2:4 when every group of 4 has at
// most 2 nonzeros and cols % 32 == 0; CSR when at least kCsrMinSparsity of it is zero; else null.
// BITSMITH_SPARSE=0 in the environment turns this off (dense kernels everywhere).
inline constexpr double kCsrMinSparsity = 0.7;
// Rows of x above which the sparse kernels chosen at run time hand over to dense oneDNN f32.
// bench_sparse (one Zen 4 thread, 4096 x 4096 .. 11008 x 4096): 2:4 and CSR at 70 % beat dense f32
// at M = 1 (1.5-4x) and M = 2 (1.1-1.6x) and lose from M = 4 on; CSR at 90 % wins up to M = 64.
inline constexpr std::int64_t kSparseDenseAboveRows = 2;
inline constexpr double kCsrAlwaysSparsity = 0.85; // CSR this sparse stays sparse up to M = 64
inline constexpr std::int64_t kCsrDenseAboveRowsVerySparse = 64;
std::unique_ptr<LinearKernel> makeSparseLinearIfPays(MatrixView w, MatrixView bias);
// The same for a quantized layer: 8-bit symmetric per-channel weights in a 2:4 pattern run on the
// int8 2:4 kernel (the dense fallback above M = 2 is oneDNN f32 over `dequantized`); else null.
std::unique_ptr<LinearKernel> makeSparseQuantizedLinearIfPays(const QuantizedTensor &q, MatrixView dequantized, MatrixView bias);

} // namespace bitsmith::core

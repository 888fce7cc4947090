// packedlinear.h: the linear kernel that runs directly on b-bit packed weights (2..8 bits, any
// grouping, act-order) — Bitsmith's own kernel, since oneDNN 2.6 has no sub-byte types — and the
// run-time choice of instruction set shared by Bitsmith's hand-written kernels.
//
// y[m][n] = sum_k x[m][k] * w[n][k] + b[n], w[n][k] = scale * (code - zero) exactly as
// QuantizedTensor::value(); results match x * dequantize(W)^T up to f32 summation order.
//   * small m (<= kPackedGemvMaxRows): a GEMV that streams the packed codes once and uses
//     y = sum_g s_g * (sum_{k in g} q_k x_k - z_g * sum_{k in g} x_k), so the inner loop is only
//     unpack -> int-to-float -> FMA; x is permuted once per call into the order the unpacking
//     produces (and into act-order group order), with zeros where a block overhangs its group.
//     Up to 4 rows of x share each unpacked block, 2 output rows share each x load, and K is
//     walked in slices whose x stays in L1; row chunks run in parallel (OpenMP).
//   * larger m: rows are dequantized tile by tile into an f32 buffer that a oneDNN f32 matmul
//     consumes, so throughput stays close to the dense f32 kernel.
#pragma once

#include "core/linear.h"
#include "packedweights.h"

#include <memory>
#include <optional>

namespace bitsmith::core {

// Instruction-set variants of Bitsmith's own kernels (core itself is built for x86-64-v2).
enum class KernelIsa { Scalar, Avx2, Avx512 };

// Whether this CPU can run the variant (Scalar always; Avx2 needs AVX2+FMA; Avx512 needs
// AVX-512 F/BW/VL/VNNI).
bool kernelIsaSupported(KernelIsa isa);
// The best supported variant, unless the environment variable BITSMITH_ISA=scalar|avx2|avx512
// asks for another one (an unsupported request falls back to the best supported variant below
// it). Read on every call, so tests can switch it with qputenv().
KernelIsa selectKernelIsa();
const char *kernelIsaName(KernelIsa isa); // "scalar", "avx2", "avx512"

// Up to this many rows of x the GEMV path runs; above it, dequantized tiles + f32 GEMM.
// Measured (one Zen 4 thread, int4 g128): the GEMV, which reads the codes from memory once per
// call and keeps x in L1, beats the tiles up to M ~ 32 (K = N = 4096, M = 16: 7.5 vs 23 ms;
// K = N = 1024, M = 32: equal), because oneDNN's f32 GEMM is slow on small M.
inline constexpr std::int64_t kPackedGemvMaxRows = 32;

// weights: shared so that several kernels (or the model and a kernel) can hold one copy.
// bias: null, or outFeatures floats that outlive the kernel.
// isa: a specific variant (must be supported), or nullopt for selectKernelIsa().
// description() reads e.g. "packed int4 g128 (avx512)".
std::unique_ptr<LinearKernel> makePackedLinear(std::shared_ptr<const PackedWeights> weights, const float *bias,
                                               std::optional<KernelIsa> isa = std::nullopt);

} // namespace bitsmith::core

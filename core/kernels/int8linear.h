// int8linear.h: W8A8 linear layers on oneDNN's int8 matmul — s8 weights with per-channel scales,
// activations quantized per token (row) at every call, s32 accumulation (VNNI where the CPU has
// it).
//
// Per call, for every row i of x (optionally divided by a smoothing vector first):
//   x'[k]  = smoothing.empty() ? x[i][k] : x[i][k] * (1 / smoothing[k])   (reciprocal kept in f32)
//   amax   = max_k |x'[k]|;  a[i] = amax / 127;  inv = 127 / amax           (amax == 0: a = 0, q = 0)
//   q[k]   = clamp(round_half_even(x'[k] * inv), -127, 127)                  (s8, symmetric)
//   acc    = sum_k q[k] * wq[n][k]                                           (exact, s32)
//   y[i][n] = ((float(acc) * wscale[n]) * a[i]) + bias[n]                    (f32, in this order)
// with wq = code - 128 and wscale the row scale of the 8-bit tensor.
//
// oneDNN 2.6 note: runtime output scales send int8 matmul to a slow gemm:jit path, and a binary
// post-op over a 2-D [M, 1] tensor sends it to ref_int8. So the weight scales are constant output
// scales (set when the primitive is created, mask over N), and the primitive is 3-D
// ([1, M, K] x [1, K, N]) so that the per-token scale is a [1, M, 1] binary-mul post-op, which the
// brgemm kernel supports; bias is a [1, 1, N] binary-add post-op. implementation(m) reports what
// oneDNN picked so tests can insist on brgemm.
#pragma once

#include "core/error.h"
#include "core/linear.h"
#include "core/quant/quantizedtensor.h"

#include <memory>
#include <span>

namespace bitsmith::core {

class Int8Linear final : public LinearKernel
{
public:
    // w8: 8-bit, symmetric (every zero 128, or zeros empty), one scale per row (groupSize 0, or -1
    // which stores equal per-row scales). bias: null or outFeatures floats that outlive the
    // kernel. smoothing: empty, or inFeatures positive divisors (SmoothQuant's s, whose product
    // into W the caller has already folded into w8).
    static Expected<std::unique_ptr<Int8Linear>> create(const QuantizedTensor &w8, const float *bias,
                                                        std::span<const float> smoothing = {});
    ~Int8Linear() override;

    void forward(const float *x, std::int64_t m, float *y) const override;
    std::int64_t inFeatures() const override;
    std::int64_t outFeatures() const override;
    QString description() const override; // "onednn int8 w8a8"

    // oneDNN's implementation name for batches of m rows, e.g. "brg:avx512_core_vnni" (creates
    // and caches the primitive if needed).
    QString implementation(std::int64_t m) const;

    // The activation quantization above, exposed for tests and benchmarks: q is m x K s8,
    // scales gets m entries (a[i]).
    void quantizeActivations(const float *x, std::int64_t m, std::int8_t *q, float *scales) const;

private:
    struct Impl;
    explicit Int8Linear(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> m_impl;
};

// The same as Int8Linear::create, as a LinearKernel.
Expected<std::unique_ptr<LinearKernel>> makeInt8Linear(const QuantizedTensor &w8, const float *bias,
                                                       std::span<const float> smoothing = {});

} // namespace bitsmith::core

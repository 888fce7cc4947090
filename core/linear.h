// linear.h: the y = x·Wᵀ + b operator of every linear layer, behind one interface so that the
// runtime does not care whether a layer is dense (f32/bf16/f16, in place in the mapped file),
// quantized or sparse.
#pragma once

#include "model.h"

#include <QString>

#include <cstdint>
#include <memory>

namespace bitsmith::core {

class LinearKernel
{
public:
    virtual ~LinearKernel() = default;
    // x: [m, inFeatures] row-major, y: [m, outFeatures] row-major (overwritten).
    virtual void forward(const float *x, std::int64_t m, float *y) const = 0;
    virtual std::int64_t inFeatures() const = 0;
    virtual std::int64_t outFeatures() const = 0;
    // e.g. "dense bf16 in place", "eigen f32"
    virtual QString description() const = 0;
    // Bytes of memory the kernel keeps of its own (copies of weights, packed layouts), not
    // counting the mapped weights it reads in place or per-call scratch.
    virtual std::int64_t residentBytes() const { return 0; }
};

enum class LinearBackend { OneDnn, Eigen };

// A dense kernel over a [out, in] weight (PyTorch layout) and an optional bias.
// The views must outlive the kernel (they point into the Model).
//   * OneDnn: reads the weight in place in its stored type, never widening the whole matrix: for
//     a few rows of x (decoding) a GEMV that converts bf16/f16 in registers; for more, tiles of
//     rows widened into a small per-thread buffer (f32 weights are used directly) that a oneDNN
//     f32 matmul consumes. The arithmetic is f32 throughout, so results equal the f32 model's up
//     to summation order. Weights given only as rows (GGUF blocks) are dequantized tile by tile.
//   * Eigen: reads view.data() (the f32 values, widened once by the Model) on every call, so
//     it sees edits of a working copy (the compression engine relies on that).
std::unique_ptr<LinearKernel> makeDenseLinear(MatrixView weight, MatrixView bias,
                                              LinearBackend backend = LinearBackend::OneDnn);

// Up to this many rows of x the dense kernel runs its GEMV; above, tiles + oneDNN.
inline constexpr std::int64_t kDenseGemvMaxRows = 8;

} // namespace bitsmith::core

// linear.h: the y = x·Wᵀ + b operator of every linear layer, behind one interface so that the
// runtime does not care whether a layer is dense f32 (oneDNN), quantized or sparse.
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
    // e.g. "onednn f32", "eigen f32"
    virtual QString description() const = 0;
};

enum class LinearBackend { OneDnn, Eigen };

// A dense f32 kernel over a [out, in] weight (PyTorch layout) and an optional bias.
// The views must outlive the kernel (they point into the Model). OneDnn reorders the weights once
// into the layout its kernel wants, so later edits of the view are not seen; Eigen reads the view
// on every call (the compression engine relies on that).
std::unique_ptr<LinearKernel> makeDenseLinear(MatrixView weight, MatrixView bias,
                                              LinearBackend backend = LinearBackend::OneDnn);

} // namespace bitsmith::core

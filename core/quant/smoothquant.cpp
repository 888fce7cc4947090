// smoothquant.cpp: SmoothQuant's smoothing factors and the int8 per-channel weight quantizer
// (definitions in smoothquant.h).
#include "smoothquant.h"

#include "quantizer.h" // quantizeRtn, requireFinite

#include <algorithm>
#include <cmath>

namespace bitsmith::core {

namespace {

// The SmoothQuant reference's floor for both statistics and for s itself.
constexpr double kFloor = 1e-5;

} // namespace

std::vector<float> columnAbsMax(MatrixView x)
{
    std::vector<float> out(static_cast<std::size_t>(x.cols), 0.0f);
    for (std::int64_t t = 0; t < x.rows; ++t)
        for (std::int64_t j = 0; j < x.cols; ++j)
            out[static_cast<std::size_t>(j)] = std::max(out[static_cast<std::size_t>(j)], std::fabs(x.data()[t * x.cols + j]));
    return out;
}

Expected<std::vector<float>> smoothQuantScales(std::span<const float> activationAbsMax,
                                               std::span<const MatrixView> linears, double alpha)
{
    if (!(alpha >= 0.0 && alpha <= 1.0))
        return unexpected(fail(ErrorCode::InvalidArgument, QStringLiteral("migration strength %1 is outside [0, 1]").arg(alpha))
                              .forParameter(QStringLiteral("alpha"))
                              .withHint(QStringLiteral("0.5 suits most models; 0.75-0.85 for models with strong outliers")));
    if (linears.empty())
        return unexpected(fail(ErrorCode::InvalidArgument, QStringLiteral("no linear layers to smooth"))
                              .forParameter(QStringLiteral("linears")));
    const auto in = static_cast<std::int64_t>(activationAbsMax.size());
    for (float a : activationAbsMax)
        if (!(a >= 0.0f) || !std::isfinite(a))
            return unexpected(fail(ErrorCode::InvalidArgument, QStringLiteral("activation maxima must be finite and non-negative"))
                                  .forParameter(QStringLiteral("activations")));

    std::vector<double> weightMax(static_cast<std::size_t>(in), 0.0);
    for (const MatrixView &w : linears) {
        if (w.cols != in)
            return unexpected(fail(ErrorCode::Mismatch, QStringLiteral("a linear has %1 input columns but there are %2 "
                                                                       "activation statistics")
                                                            .arg(w.cols)
                                                            .arg(in))
                                  .forParameter(QStringLiteral("linears")));
        if (auto ok = requireFinite(w, QStringLiteral("weights")); !ok)
            return unexpected(ok.error());
        for (std::int64_t r = 0; r < w.rows; ++r)
            for (std::int64_t j = 0; j < in; ++j)
                weightMax[static_cast<std::size_t>(j)] = std::max(weightMax[static_cast<std::size_t>(j)],
                                                                  std::fabs(static_cast<double>(w.data()[r * in + j])));
    }

    std::vector<float> s(static_cast<std::size_t>(in));
    for (std::size_t j = 0; j < s.size(); ++j) {
        const double a = std::pow(static_cast<double>(activationAbsMax[j]), alpha);
        const double b = std::pow(std::max(weightMax[j], kFloor), 1.0 - alpha);
        s[j] = static_cast<float>(std::max(a / b, kFloor));
    }
    return s;
}

Expected<QuantizedTensor> quantizeInt8PerChannel(MatrixView w)
{
    return quantizeRtn(w, QuantFormat{8, 0, true});
}

} // namespace bitsmith::core

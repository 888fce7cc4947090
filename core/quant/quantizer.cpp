// quantizer.cpp: min-max / MSE-searched scale and zero point, and round-to-nearest quantization
// of a matrix (definitions and Bitsmith's conventions in quantizer.h).
#include "quantizer.h"

#include "core/dtype.h" // floatToHalf, halfToFloat

#include <limits>
#include <vector>

namespace bitsmith::core {

namespace {

// The GPTQ reference's MSE grid: p = 1 - i/grid for i < maxshrink * grid, error norm 2.4.
constexpr int kMseGrid = 100;
constexpr int kMseSteps = 80; // maxshrink 0.8
constexpr double kMseNorm = 2.4;

// Smallest positive fp16 value (subnormal 2^-24) and largest finite one.
constexpr float kHalfMin = 5.9604644775390625e-8f;
constexpr float kHalfMax = 65504.0f;

} // namespace

Expected<void> validateFormat(const QuantFormat &format)
{
    if (format.bits < 2 || format.bits > 8)
        return unexpected(fail(ErrorCode::InvalidArgument,
                               QStringLiteral("%1-bit quantization is not supported").arg(format.bits))
                              .forParameter(QStringLiteral("bits"))
                              .withHint(QStringLiteral("use 2 to 8 bits")));
    if (format.groupSize < -1)
        return unexpected(fail(ErrorCode::InvalidArgument,
                               QStringLiteral("invalid group size %1").arg(format.groupSize))
                              .forParameter(QStringLiteral("group"))
                              .withHint(QStringLiteral("use a positive group size (e.g. 128), 0 for one "
                                                       "group per output channel or -1 for the whole tensor")));
    return {};
}

Expected<void> requireFinite(MatrixView m, const QString &what)
{
    const std::int64_t n = m.rows * m.cols;
    for (std::int64_t i = 0; i < n; ++i) {
        if (!std::isfinite(m.data()[i]))
            return unexpected(fail(ErrorCode::InvalidArgument,
                                   QStringLiteral("%1 contain NaN or Inf (row %2, column %3)")
                                       .arg(what)
                                       .arg(i / m.cols)
                                       .arg(i % m.cols))
                                  .forParameter(what)
                                  .withHint(QStringLiteral("check the checkpoint or the calibration data")));
    }
    return {};
}

float toStoredScale(float scale)
{
    const float h = halfToFloat(floatToHalf(scale));
    // A zero scale would turn every code into inf/NaN; an infinite one every weight into zero.
    if (h < kHalfMin)
        return kHalfMin;
    return std::min(h, kHalfMax);
}

QuantParams findParams(const float *w, std::int64_t n, const QuantFormat &format, bool mseSearch)
{
    const int maxq = format.maxCode();
    const auto maxqF = static_cast<float>(maxq);
    // Starting at 0 gives xmin = min(min w, 0) and xmax = max(max w, 0) directly.
    float xmin = 0.0f;
    float xmax = 0.0f;
    for (std::int64_t i = 0; i < n; ++i) {
        xmin = std::min(xmin, w[i]);
        xmax = std::max(xmax, w[i]);
    }
    if (format.symmetric) {
        xmax = std::max(-xmin, xmax);
        xmin = -xmax;
    }
    if (xmin == 0.0f && xmax == 0.0f) {
        xmin = -1.0f;
        xmax = 1.0f;
    }

    const auto symmetricZero = static_cast<float>((maxq + 1) / 2);
    auto paramsFor = [&](float lo, float hi) {
        QuantParams p;
        p.scale = toStoredScale((hi - lo) / maxqF);
        // + 0.0f turns the -0 of -(+0) into +0. The clamp only matters for scales that hit
        // fp16's range limits; otherwise |error| <= maxq * 2^-11 < 0.5 keeps zero in range.
        p.zero = format.symmetric ? symmetricZero
                                  : std::clamp(std::nearbyint(-lo / p.scale) + 0.0f, 0.0f, maxqF);
        return p;
    };

    QuantParams best = paramsFor(xmin, xmax);
    if (!mseSearch)
        return best;

    double bestError = std::numeric_limits<double>::infinity();
    for (int i = 0; i < kMseSteps; ++i) {
        // In float, as p * xmin is in the float32 references.
        const auto shrink = static_cast<float>(1.0 - static_cast<double>(i) / kMseGrid);
        const QuantParams p = paramsFor(shrink * xmin, shrink * xmax);
        double error = 0.0;
        for (std::int64_t k = 0; k < n; ++k) {
            const float d = std::fabs(dequantizeCode(quantizeCode(w[k], p, maxq), p) - w[k]);
            if (d != 0.0f)
                error += std::pow(static_cast<double>(d), kMseNorm);
        }
        if (error < bestError) {
            bestError = error;
            best = p;
        }
    }
    return best;
}

Expected<QuantizedTensor> quantizeRtn(MatrixView w, const QuantFormat &format, bool mseSearch, const float *clip)
{
    if (auto ok = validateFormat(format); !ok)
        return unexpected(ok.error());
    if (auto ok = requireFinite(w, QStringLiteral("weights")); !ok)
        return unexpected(ok.error());

    QuantizedTensor t;
    t.rows = w.rows;
    t.cols = w.cols;
    t.format = format;
    const std::int64_t groups = t.groupsPerRow();
    const std::int64_t groupLen = format.groupSize > 0 ? format.groupSize : w.cols;
    t.codes.resize(static_cast<std::size_t>(w.rows * w.cols));
    t.scales.resize(static_cast<std::size_t>(w.rows * groups));
    t.zeros.resize(static_cast<std::size_t>(w.rows * groups));

    const float *src = w.data();
    std::vector<float> clipped;
    if (clip) {
        clipped.assign(w.data(), w.data() + w.rows * w.cols);
        for (std::int64_t r = 0; r < w.rows; ++r) {
            for (std::int64_t g = 0; g < groups; ++g) {
                const float c = clip[r * groups + g];
                if (!(c >= 0.0f) || !std::isfinite(c))
                    return unexpected(fail(ErrorCode::InvalidArgument,
                                           QStringLiteral("clip value %1 of row %2, group %3 is not a "
                                                          "finite non-negative number")
                                               .arg(c)
                                               .arg(r)
                                               .arg(g))
                                          .forParameter(QStringLiteral("clip")));
                const std::int64_t begin = g * groupLen;
                const std::int64_t end = std::min(begin + groupLen, w.cols);
                for (std::int64_t k = begin; k < end; ++k) {
                    float &x = clipped[static_cast<std::size_t>(r * w.cols + k)];
                    x = std::clamp(x, -c, c);
                }
            }
        }
        src = clipped.data();
    }

    const int maxq = format.maxCode();
    QuantParams tensorParams;
    if (format.groupSize == -1)
        tensorParams = findParams(src, w.rows * w.cols, format, mseSearch);
    for (std::int64_t r = 0; r < w.rows; ++r) {
        for (std::int64_t g = 0; g < groups; ++g) {
            const std::int64_t begin = g * groupLen;
            const std::int64_t len = std::min(groupLen, w.cols - begin);
            const float *x = src + r * w.cols + begin;
            const QuantParams p = format.groupSize == -1 ? tensorParams : findParams(x, len, format, mseSearch);
            t.scales[static_cast<std::size_t>(r * groups + g)] = p.scale;
            t.zeros[static_cast<std::size_t>(r * groups + g)] = p.zero;
            std::uint8_t *codes = t.codes.data() + r * w.cols + begin;
            for (std::int64_t k = 0; k < len; ++k)
                codes[k] = quantizeCode(x[k], p, maxq);
        }
    }
    return t;
}

} // namespace bitsmith::core

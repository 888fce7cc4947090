// awq.cpp: AWQ's activation-aware scale search and weight clip search (definitions in awq.h).
#include "awq.h"

#include "gptq.h"      // HessianAccumulator (the Gram matrix XᵀX in float chunks, double sums)
#include "quantizer.h" // quantizeRtn, findParams, validateFormat

#include <Eigen/Dense>

#include <algorithm>
#include <cmath>
#include <limits>

namespace bitsmith::core {

namespace {

using RowMajorF = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using RowMajorD = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// Squared output errors Σ_t (x_t · δ_r)² of weight differences δ over a column range of X.
// With more rows than columns it works on the Gram matrix XᵀX (O(in²) memory, cost independent
// of n); otherwise on X itself.
class OutputError
{
public:
    explicit OutputError(MatrixView x)
        : m_rows(x.rows)
        , m_useGram(x.rows >= x.cols)
    {
        if (m_useGram) {
            HessianAccumulator acc(x.cols);
            acc.add(x.data(), x.rows);
            m_gram = acc.hessian() * (static_cast<double>(x.rows) / 2.0); // H = (2/n) XᵀX
        } else {
            m_x = Eigen::Map<const RowMajorF>(x.data(), x.rows, x.cols).cast<double>();
        }
    }

    std::int64_t rows() const { return m_rows; }

    // delta: [out, len] differences for input columns begin .. begin+len-1; one sum per row.
    Eigen::VectorXd rowErrors(const RowMajorD &delta, std::int64_t begin) const
    {
        const std::int64_t len = delta.cols();
        if (m_useGram)
            return (delta * m_gram.block(begin, begin, len, len)).cwiseProduct(delta).rowwise().sum();
        const Eigen::MatrixXd out = m_x.middleCols(begin, len) * delta.transpose();
        return out.colwise().squaredNorm().transpose();
    }

private:
    std::int64_t m_rows = 0;
    bool m_useGram = false;
    Eigen::MatrixXd m_gram;
    Eigen::MatrixXd m_x;
};

Expected<void> checkShapes(MatrixView x, std::span<const MatrixView> linears, const QuantFormat &format)
{
    if (auto ok = validateFormat(format); !ok)
        return ok;
    if (x.rows < 1 || x.cols < 1)
        return unexpected(fail(ErrorCode::InvalidArgument, QStringLiteral("no calibration activations"))
                              .forParameter(QStringLiteral("activations"))
                              .withHint(QStringLiteral("run the calibration set through the model first")));
    if (linears.empty())
        return unexpected(fail(ErrorCode::InvalidArgument, QStringLiteral("no linear layers to scale"))
                              .forParameter(QStringLiteral("linears")));
    if (auto ok = requireFinite(x, QStringLiteral("activations")); !ok)
        return ok;
    for (const MatrixView &w : linears) {
        if (w.cols != x.cols)
            return unexpected(fail(ErrorCode::Mismatch, QStringLiteral("a linear has %1 input columns but the "
                                                                       "activations have %2")
                                                            .arg(w.cols)
                                                            .arg(x.cols))
                                  .forParameter(QStringLiteral("linears")));
        if (auto ok = requireFinite(w, QStringLiteral("weights")); !ok)
            return ok;
    }
    return {};
}

Error cancelled()
{
    return fail(ErrorCode::Cancelled, QStringLiteral("AWQ was cancelled"));
}

} // namespace

std::vector<float> scaleColumns(MatrixView m, std::span<const float> s, bool divide)
{
    std::vector<float> out(static_cast<std::size_t>(m.rows * m.cols));
    for (std::int64_t r = 0; r < m.rows; ++r)
        for (std::int64_t c = 0; c < m.cols; ++c) {
            const float v = m.data()[r * m.cols + c];
            out[static_cast<std::size_t>(r * m.cols + c)] = divide ? v / s[static_cast<std::size_t>(c)]
                                                                   : v * s[static_cast<std::size_t>(c)];
        }
    return out;
}

Expected<AwqScaleResult> awqSearchScales(MatrixView x, std::span<const MatrixView> linears, const QuantFormat &format,
                                         const AwqOptions &options, Feedback *feedback)
{
    if (auto ok = checkShapes(x, linears, format); !ok)
        return unexpected(ok.error());
    if (options.grid < 1)
        return unexpected(fail(ErrorCode::InvalidArgument, QStringLiteral("the α grid needs at least one point"))
                              .forParameter(QStringLiteral("grid")));

    const std::int64_t in = x.cols;
    std::vector<double> meanAbs(static_cast<std::size_t>(in), 0.0);
    for (std::int64_t t = 0; t < x.rows; ++t)
        for (std::int64_t j = 0; j < in; ++j)
            meanAbs[static_cast<std::size_t>(j)] += std::fabs(static_cast<double>(x.data()[t * in + j]));
    for (double &v : meanAbs)
        v /= static_cast<double>(x.rows);

    const OutputError outputError(x);
    AwqScaleResult result;
    result.loss = std::numeric_limits<double>::infinity();
    std::vector<float> s(static_cast<std::size_t>(in));
    for (int k = 0; k < options.grid; ++k) {
        const double alpha = static_cast<double>(k) / options.grid;
        double lo = std::numeric_limits<double>::infinity();
        double hi = 0.0;
        std::vector<double> sd(static_cast<std::size_t>(in));
        for (std::size_t j = 0; j < sd.size(); ++j) {
            sd[j] = std::max(std::pow(meanAbs[j], alpha), 1e-4);
            lo = std::min(lo, sd[j]);
            hi = std::max(hi, sd[j]);
        }
        const double norm = std::sqrt(hi * lo);
        for (std::size_t j = 0; j < sd.size(); ++j)
            s[j] = static_cast<float>(sd[j] / norm);

        double loss = 0.0;
        for (const MatrixView &w : linears) {
            const std::vector<float> scaled = scaleColumns(w, s);
            auto q = quantizeRtn(MatrixView{scaled.data(), w.rows, w.cols}, format);
            if (!q)
                return unexpected(q.error());
            RowMajorD delta(w.rows, in);
            for (std::int64_t r = 0; r < w.rows; ++r)
                for (std::int64_t c = 0; c < in; ++c) {
                    const float restored = q->value(r, c) / s[static_cast<std::size_t>(c)];
                    delta(r, c) = static_cast<double>(w.data()[r * in + c]) - static_cast<double>(restored);
                }
            loss += outputError.rowErrors(delta, 0).sum() / (static_cast<double>(x.rows) * static_cast<double>(w.rows));
        }
        result.lossPerAlpha.push_back(loss);
        if (loss < result.loss) {
            result.loss = loss;
            result.alpha = alpha;
            result.scales = s;
        }
        if (feedback) {
            feedback->setProgress(static_cast<double>(k + 1) / options.grid);
            if (feedback->isCancelled())
                return unexpected(cancelled());
        }
    }
    return result;
}

Expected<std::vector<float>> awqSearchClip(MatrixView x, MatrixView w, const QuantFormat &format,
                                           const AwqOptions &options, Feedback *feedback)
{
    if (auto ok = checkShapes(x, std::span<const MatrixView>(&w, 1), format); !ok)
        return unexpected(ok.error());
    if (format.groupSize == -1)
        return unexpected(fail(ErrorCode::Unsupported, QStringLiteral("the AWQ clip search needs per-channel or "
                                                                      "per-group quantization"))
                              .forParameter(QStringLiteral("group"))
                              .withHint(QStringLiteral("use a group size of 0 (per channel) or > 0, or skip clipping")));
    if (options.clipGrid < 1 || options.clipSteps < 1)
        return unexpected(fail(ErrorCode::InvalidArgument, QStringLiteral("the clip grid needs at least one point"))
                              .forParameter(QStringLiteral("clipGrid")));

    const std::int64_t rows = w.rows;
    const std::int64_t cols = w.cols;
    const std::int64_t groupLen = format.groupSize > 0 ? format.groupSize : cols;
    const std::int64_t groups = (cols + groupLen - 1) / groupLen;
    const int maxq = format.maxCode();
    const OutputError outputError(x);

    std::vector<float> best(static_cast<std::size_t>(rows * groups));
    std::vector<float> clamped(static_cast<std::size_t>(groupLen));
    for (std::int64_t g = 0; g < groups; ++g) {
        const std::int64_t begin = g * groupLen;
        const std::int64_t len = std::min(groupLen, cols - begin);
        std::vector<float> maxAbs(static_cast<std::size_t>(rows), 0.0f);
        for (std::int64_t r = 0; r < rows; ++r)
            for (std::int64_t k = 0; k < len; ++k)
                maxAbs[static_cast<std::size_t>(r)] = std::max(maxAbs[static_cast<std::size_t>(r)],
                                                              std::fabs(w.data()[r * cols + begin + k]));
        std::vector<double> bestError(static_cast<std::size_t>(rows), std::numeric_limits<double>::infinity());
        RowMajorD delta(rows, len);
        for (int i = 0; i < options.clipSteps; ++i) {
            // In float, as max_val * (1 - i/20) is in the float32 references.
            const auto factor = static_cast<float>(1.0 - static_cast<double>(i) / options.clipGrid);
            std::vector<float> clip(static_cast<std::size_t>(rows));
            for (std::int64_t r = 0; r < rows; ++r) {
                const float c = maxAbs[static_cast<std::size_t>(r)] * factor;
                clip[static_cast<std::size_t>(r)] = c;
                const float *src = w.data() + r * cols + begin;
                for (std::int64_t k = 0; k < len; ++k)
                    clamped[static_cast<std::size_t>(k)] = std::clamp(src[k], -c, c);
                const QuantParams p = findParams(clamped.data(), len, format, false);
                for (std::int64_t k = 0; k < len; ++k) {
                    const float q = dequantizeCode(quantizeCode(clamped[static_cast<std::size_t>(k)], p, maxq), p);
                    delta(r, k) = static_cast<double>(src[k]) - static_cast<double>(q);
                }
            }
            const Eigen::VectorXd errors = outputError.rowErrors(delta, begin);
            for (std::int64_t r = 0; r < rows; ++r) {
                if (errors[r] < bestError[static_cast<std::size_t>(r)]) {
                    bestError[static_cast<std::size_t>(r)] = errors[r];
                    best[static_cast<std::size_t>(r * groups + g)] = clip[static_cast<std::size_t>(r)];
                }
            }
        }
        if (feedback) {
            feedback->setProgress(static_cast<double>(g + 1) / static_cast<double>(groups));
            if (feedback->isCancelled())
                return unexpected(cancelled());
        }
    }
    return best;
}

Expected<AwqLinearResult> awqQuantizeLinear(MatrixView x, MatrixView w, std::span<const float> scales,
                                            const QuantFormat &format, bool clipSearch, const AwqOptions &options,
                                            Feedback *feedback)
{
    if (static_cast<std::int64_t>(scales.size()) != w.cols || (clipSearch && x.cols != w.cols))
        return unexpected(fail(ErrorCode::Mismatch, QStringLiteral("%1 scales and %2 activation columns for a "
                                                                   "weight with %3 input columns")
                                                        .arg(scales.size())
                                                        .arg(x.cols)
                                                        .arg(w.cols))
                              .forParameter(QStringLiteral("scales")));
    for (float v : scales)
        if (!(v > 0.0f) || !std::isfinite(v))
            return unexpected(fail(ErrorCode::InvalidArgument, QStringLiteral("AWQ scales must be finite and positive"))
                                  .forParameter(QStringLiteral("scales")));

    const std::vector<float> ws = scaleColumns(w, scales);
    const MatrixView scaledW{ws.data(), w.rows, w.cols};
    AwqLinearResult result;
    if (clipSearch) {
        const std::vector<float> xs = scaleColumns(x, scales, true);
        auto clip = awqSearchClip(MatrixView{xs.data(), x.rows, x.cols}, scaledW, format, options, feedback);
        if (!clip)
            return unexpected(clip.error());
        result.clip = std::move(*clip);
    }
    auto q = quantizeRtn(scaledW, format, false, result.clip.empty() ? nullptr : result.clip.data());
    if (!q)
        return unexpected(q.error());
    result.q = std::move(*q);
    return result;
}

} // namespace bitsmith::core

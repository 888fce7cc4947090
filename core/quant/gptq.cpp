// gptq.cpp: the Hessian accumulator and GPTQ's column-by-column quantization with error feedback
// (algorithm, and where it deliberately differs from the GPTQ repository, in gptq.h).
#include "gptq.h"

#include "quantizer.h" // findParams, quantizeCode, dequantizeCode, validateFormat

#include <algorithm>
#include <cmath>
#include <numeric>

namespace bitsmith::core {

namespace {

using RowMajorF = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// Rows whose xᵀx is summed in float before it joins the double running average.
constexpr std::int64_t kHessianChunk = 1024;

Error notPositiveDefinite()
{
    return fail(ErrorCode::InvalidArgument,
                QStringLiteral("the damped Hessian is not positive definite (its Cholesky factorization failed)"))
        .forParameter(QStringLiteral("dampPercent"))
        .withHint(QStringLiteral("increase the damping (e.g. 0.1) or use more calibration data"));
}

} // namespace

HessianAccumulator::HessianAccumulator(std::int64_t cols)
    : m_cols(cols)
    , m_h(Eigen::MatrixXd::Zero(cols, cols))
    , m_chunk(cols, cols)
    , m_meanAbs(static_cast<std::size_t>(cols), 0.0)
    , m_meanSquare(static_cast<std::size_t>(cols), 0.0)
    , m_absMax(static_cast<std::size_t>(cols), 0.0)
{
}

void HessianAccumulator::add(const float *x, std::int64_t rows)
{
    if (rows <= 0 || m_cols == 0)
        return;
    for (std::int64_t start = 0; start < rows; start += kHessianChunk) {
        const std::int64_t t = std::min(kHessianChunk, rows - start);
        const Eigen::Map<const RowMajorF> chunk(x + start * m_cols, t, m_cols);

        // Σ x xᵀ over the chunk, lower triangle only (half the flops of a full product).
        m_chunk.setZero();
        m_chunk.selfadjointView<Eigen::Lower>().rankUpdate(chunk.transpose());

        const auto n = static_cast<double>(m_count);
        const double total = n + static_cast<double>(t);
        m_h.triangularView<Eigen::Lower>() = m_h * (n / total) + m_chunk.cast<double>() * (2.0 / total);

        const Eigen::MatrixXd a = chunk.cast<double>().cwiseAbs();
        for (std::int64_t j = 0; j < m_cols; ++j) {
            const auto col = a.col(j);
            const auto k = static_cast<std::size_t>(j);
            m_meanAbs[k] = (m_meanAbs[k] * n + col.sum()) / total;
            m_meanSquare[k] = (m_meanSquare[k] * n + col.squaredNorm()) / total;
            m_absMax[k] = std::max(m_absMax[k], col.maxCoeff());
        }
        m_count += t;
    }
    // Mirror the lower triangle so that hessian() is the full symmetric matrix.
    for (std::int64_t j = 0; j < m_cols; ++j)
        for (std::int64_t i = j + 1; i < m_cols; ++i)
            m_h(j, i) = m_h(i, j);
}

Expected<GptqResult> gptqQuantize(MatrixView w, const Eigen::MatrixXd &hessian, const QuantFormat &format,
                                  const GptqOptions &options, Feedback *feedback)
{
    if (auto ok = validateFormat(format); !ok)
        return unexpected(ok.error());
    if (options.blockSize < 1)
        return unexpected(fail(ErrorCode::InvalidArgument,
                               QStringLiteral("block size %1 must be positive").arg(options.blockSize))
                              .forParameter(QStringLiteral("blockSize")));
    if (!(options.dampPercent >= 0.0) || !std::isfinite(options.dampPercent))
        return unexpected(fail(ErrorCode::InvalidArgument,
                               QStringLiteral("damping %1 must be a non-negative number").arg(options.dampPercent))
                              .forParameter(QStringLiteral("dampPercent"))
                              .withHint(QStringLiteral("the usual damping is 0.01 (1% of the mean diagonal)")));
    if (hessian.rows() != w.cols || hessian.cols() != w.cols)
        return unexpected(fail(ErrorCode::Mismatch, QStringLiteral("the Hessian is %1x%2 but the weight has %3 input columns")
                                                        .arg(hessian.rows())
                                                        .arg(hessian.cols())
                                                        .arg(w.cols))
                              .forParameter(QStringLiteral("hessian")));
    if (auto ok = requireFinite(w, QStringLiteral("weights")); !ok)
        return unexpected(ok.error());
    if (!hessian.allFinite())
        return unexpected(fail(ErrorCode::InvalidArgument, QStringLiteral("the Hessian contains NaN or Inf"))
                              .forParameter(QStringLiteral("hessian"))
                              .withHint(QStringLiteral("check the calibration activations for overflow")));

    const std::int64_t rows = w.rows;
    const std::int64_t cols = w.cols;
    const int maxq = format.maxCode();
    const bool grouped = format.groupSize > 0;
    const std::int64_t groupSize = grouped ? format.groupSize : cols;

    // Column-major, so that the column GPTQ works on is contiguous.
    Eigen::MatrixXf W = Eigen::Map<const RowMajorF>(w.data(), rows, cols);
    Eigen::MatrixXd H = hessian;

    GptqResult result;
    // Dead columns: their input is always zero, so any weight is as good as another; zeroing it
    // and putting 1 on the diagonal keeps H invertible without affecting other columns.
    for (std::int64_t c = 0; c < cols; ++c) {
        if (H(c, c) == 0.0) {
            H(c, c) = 1.0;
            W.col(c).setZero();
            ++result.deadColumns;
        }
    }

    QuantizedTensor &t = result.q;
    t.rows = rows;
    t.cols = cols;
    t.format = format;
    const std::int64_t groups = t.groupsPerRow();
    t.codes.resize(static_cast<std::size_t>(rows * cols));
    t.scales.resize(static_cast<std::size_t>(rows * groups));
    t.zeros.resize(static_cast<std::size_t>(rows * groups));

    auto storeParams = [&](std::int64_t group, const std::vector<QuantParams> &p) {
        for (std::int64_t r = 0; r < rows; ++r) {
            t.scales[static_cast<std::size_t>(r * groups + group)] = p[static_cast<std::size_t>(r)].scale;
            t.zeros[static_cast<std::size_t>(r * groups + group)] = p[static_cast<std::size_t>(r)].zero;
        }
    };
    // Per-row parameters of a block of columns (copied row-major: findParams wants a row).
    auto rowParams = [&](const RowMajorF &block, std::vector<QuantParams> &out) {
        for (std::int64_t r = 0; r < rows; ++r)
            out[static_cast<std::size_t>(r)] = findParams(block.row(r).data(), block.cols(), format, options.mseSearch);
    };

    std::vector<QuantParams> current(static_cast<std::size_t>(rows));
    std::vector<std::vector<QuantParams>> staticParams;
    if (!grouped) {
        if (format.groupSize == -1) {
            const RowMajorF all = W;
            std::fill(current.begin(), current.end(), findParams(all.data(), rows * cols, format, options.mseSearch));
        } else {
            rowParams(W, current);
        }
        storeParams(0, current);
    } else if (options.staticGroups) {
        staticParams.resize(static_cast<std::size_t>(groups), std::vector<QuantParams>(static_cast<std::size_t>(rows)));
        for (std::int64_t k = 0; k < groups; ++k) {
            const std::int64_t begin = k * groupSize;
            rowParams(W.middleCols(begin, std::min(groupSize, cols - begin)), staticParams[static_cast<std::size_t>(k)]);
            storeParams(k, staticParams[static_cast<std::size_t>(k)]);
        }
    }

    std::vector<std::int32_t> perm(static_cast<std::size_t>(cols));
    std::iota(perm.begin(), perm.end(), 0);
    if (options.actOrder) {
        std::stable_sort(perm.begin(), perm.end(), [&](std::int32_t a, std::int32_t b) { return H(a, a) > H(b, b); });
        Eigen::MatrixXf Wp(rows, cols);
        Eigen::MatrixXd Hp(cols, cols);
        for (std::int64_t j = 0; j < cols; ++j) {
            Wp.col(j) = W.col(perm[static_cast<std::size_t>(j)]);
            for (std::int64_t i = 0; i < cols; ++i)
                Hp(i, j) = H(perm[static_cast<std::size_t>(i)], perm[static_cast<std::size_t>(j)]);
        }
        W.swap(Wp);
        H.swap(Hp);
        result.permutation = perm;
    }

    // Hinv = the upper Cholesky factor U of (H + damp·I)^-1 = UᵀU. The reference factorizes,
    // inverts and factorizes again (~3n³ flops, through an explicit inverse). With J the
    // reversal permutation and J·H·J = L·Lᵀ, the same U is J·L^-1·J (upper, as L^-1 is lower):
    // one Cholesky and one triangular inverse, ~2n³/3 flops (n = 4096: 2.7 s instead of 9.7 s).
    H.diagonal().array() += options.dampPercent * H.diagonal().mean();
    Eigen::MatrixXf Hinv;
    {
        Eigen::MatrixXd reversed = H.reverse();
        H.resize(0, 0);
        Eigen::LLT<Eigen::Ref<Eigen::MatrixXd>> llt(reversed);
        if (llt.info() != Eigen::Success)
            return unexpected(notPositiveDefinite());
        // L^-1 by column panels, each solved only below its diagonal block (L^-1 is lower).
        Eigen::MatrixXd inverse = Eigen::MatrixXd::Zero(cols, cols);
        constexpr std::int64_t kPanel = 256;
        for (std::int64_t c0 = 0; c0 < cols; c0 += kPanel) {
            const std::int64_t width = std::min(kPanel, cols - c0);
            auto panel = inverse.block(c0, c0, cols - c0, width);
            panel.topRows(width).setIdentity();
            reversed.bottomRightCorner(cols - c0, cols - c0).triangularView<Eigen::Lower>().solveInPlace(panel);
        }
        Hinv = inverse.reverse().cast<float>();
    }

    // Codes in permuted order, column-major like W.
    std::vector<std::uint8_t> codes(static_cast<std::size_t>(rows * cols));
    const std::vector<QuantParams> *params = &current;
    double loss = 0.0;
    Eigen::MatrixXf W1;
    Eigen::MatrixXf err1;
    for (std::int64_t i1 = 0; i1 < cols; i1 += options.blockSize) {
        const std::int64_t i2 = std::min<std::int64_t>(i1 + options.blockSize, cols);
        const std::int64_t count = i2 - i1;
        W1 = W.middleCols(i1, count);
        err1.resize(rows, count);
        for (std::int64_t i = 0; i < count; ++i) {
            const std::int64_t j = i1 + i;
            if (grouped) {
                if (!options.staticGroups) {
                    if (j % groupSize == 0) {
                        // From W, not W1: the reference's choice (see gptq.h).
                        rowParams(W.middleCols(j, std::min(groupSize, cols - j)), current);
                        storeParams(j / groupSize, current);
                    }
                } else {
                    const std::int64_t original = options.actOrder ? perm[static_cast<std::size_t>(j)] : j;
                    params = &staticParams[static_cast<std::size_t>(original / groupSize)];
                }
            }
            const float d = Hinv(j, j);
            float *wcol = W1.col(i).data();
            float *ecol = err1.col(i).data();
            std::uint8_t *qcol = codes.data() + j * rows;
            for (std::int64_t r = 0; r < rows; ++r) {
                const QuantParams p = (*params)[static_cast<std::size_t>(r)];
                const std::uint8_t q = quantizeCode(wcol[r], p, maxq);
                qcol[r] = q;
                const float diff = wcol[r] - dequantizeCode(q, p);
                ecol[r] = diff / d;
                const double scaled = static_cast<double>(diff) / d;
                loss += 0.5 * scaled * scaled;
            }
            // Column i itself is done; the reference also updates it, which changes nothing.
            const std::int64_t rest = count - i - 1;
            if (rest > 0)
                W1.rightCols(rest).noalias() -= err1.col(i) * Hinv.row(j).segment(j + 1, rest);
        }
        // Lazy batch update of all later columns with this block's errors: one GEMM.
        if (i2 < cols)
            W.rightCols(cols - i2).noalias() -= err1 * Hinv.block(i1, i2, count, cols - i2);

        if (feedback) {
            feedback->setProgress(static_cast<double>(i2) / static_cast<double>(cols));
            if (feedback->isCancelled())
                return unexpected(fail(ErrorCode::Cancelled, QStringLiteral("GPTQ was cancelled")));
        }
    }

    for (std::int64_t j = 0; j < cols; ++j) {
        const std::int64_t c = perm[static_cast<std::size_t>(j)];
        for (std::int64_t r = 0; r < rows; ++r)
            t.codes[static_cast<std::size_t>(r * cols + c)] = codes[static_cast<std::size_t>(j * rows + r)];
    }
    if (options.actOrder && grouped && !options.staticGroups) {
        t.groupIndex.resize(static_cast<std::size_t>(cols));
        for (std::int64_t j = 0; j < cols; ++j)
            t.groupIndex[static_cast<std::size_t>(perm[static_cast<std::size_t>(j)])] = static_cast<std::int32_t>(j / groupSize);
    }
    result.loss = loss;
    return result;
}

} // namespace bitsmith::core

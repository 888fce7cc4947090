// sparsegpt.cpp: SparseGPT's mask selection with error compensation (algorithm in sparsegpt.h).
#include "sparsegpt.h"

#include "core/prune/mask.h"      // validateSparsity
#include "core/quant/quantizer.h" // findParams, quantizeCode, dequantizeCode, validateFormat

#include <algorithm>
#include <array>
#include <cmath>
#include <numeric>

namespace bitsmith::core {

Expected<SparseGptResult> sparseGptPrune(MatrixView w, const Eigen::MatrixXd &hessian, double sparsity,
                                         SparsityPattern pattern, const SparseGptOptions &options, Feedback *feedback)
{
    if (auto ok = validateSparsity(sparsity, pattern, w.cols); !ok)
        return unexpected(ok.error());
    if (options.quantize)
        if (auto ok = validateFormat(*options.quantize); !ok)
            return unexpected(ok.error());
    if (options.blockSize < 1)
        return unexpected(fail(ErrorCode::InvalidArgument, QStringLiteral("block size %1 must be positive").arg(options.blockSize))
                              .forParameter(QStringLiteral("blockSize")));
    if (pattern.isNM() && options.blockSize % pattern.m != 0)
        return unexpected(fail(ErrorCode::InvalidArgument, QStringLiteral("block size %1 is not a multiple of M = %2")
                                                               .arg(options.blockSize)
                                                               .arg(pattern.m))
                              .forParameter(QStringLiteral("blockSize")));
    if (!(options.dampPercent >= 0.0) || !std::isfinite(options.dampPercent))
        return unexpected(fail(ErrorCode::InvalidArgument, QStringLiteral("damping %1 must be a non-negative number").arg(options.dampPercent))
                              .forParameter(QStringLiteral("dampPercent")));
    if (hessian.rows() != w.cols || hessian.cols() != w.cols)
        return unexpected(fail(ErrorCode::Mismatch, QStringLiteral("the Hessian is %1x%2 but the weight has %3 input columns")
                                                        .arg(hessian.rows())
                                                        .arg(hessian.cols())
                                                        .arg(w.cols))
                              .forParameter(QStringLiteral("hessian")));
    if (auto ok = requireFinite(w, QStringLiteral("weights")); !ok)
        return unexpected(ok.error());
    if (!hessian.allFinite())
        return unexpected(fail(ErrorCode::InvalidArgument, QStringLiteral("the Hessian contains NaN or Inf")).forParameter(QStringLiteral("hessian")));

    const std::int64_t rows = w.rows, cols = w.cols;
    using RowMajorF = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
    Eigen::MatrixXd W = Eigen::Map<const RowMajorF>(w.data(), rows, cols).cast<double>();
    Eigen::MatrixXd H = hessian;
    SparseGptResult result;
    for (std::int64_t c = 0; c < cols; ++c)
        if (H(c, c) == 0.0) {
            H(c, c) = 1.0;
            W.col(c).setZero();
            ++result.deadColumns;
        }
    H.diagonal().array() += options.dampPercent * H.diagonal().mean();
    // Hinv = the upper Cholesky factor U of (H + damp·I)^-1 = UᵀU, computed as in core/quant/gptq:
    // with J the reversal and J·H·J = L·Lᵀ, U = J·L^-1·J — one Cholesky and one triangular
    // inverse (a third of the flops of factorize-invert-factorize, and no second full matrix).
    Eigen::MatrixXd Hinv;
    {
        Eigen::MatrixXd reversed = H.reverse();
        H.resize(0, 0);
        Eigen::LLT<Eigen::Ref<Eigen::MatrixXd>> llt(reversed);
        if (llt.info() != Eigen::Success)
            return unexpected(fail(ErrorCode::InvalidArgument, QStringLiteral("the damped Hessian is not positive definite"))
                                  .forParameter(QStringLiteral("dampPercent"))
                                  .withHint(QStringLiteral("increase the damping or use more calibration data")));
        Hinv = Eigen::MatrixXd::Zero(cols, cols);
        constexpr std::int64_t kPanel = 256;
        for (std::int64_t c0 = 0; c0 < cols; c0 += kPanel) {
            const std::int64_t width = std::min(kPanel, cols - c0);
            auto panel = Hinv.block(c0, c0, cols - c0, width);
            panel.topRows(width).setIdentity();
            reversed.bottomRightCorner(cols - c0, cols - c0).triangularView<Eigen::Lower>().solveInPlace(panel);
        }
        Hinv = Hinv.reverse().eval();
    }

    // Joint quantization: per-row parameters (and codes in original order).
    const bool quantize = options.quantize.has_value();
    QuantFormat format = quantize ? *options.quantize : QuantFormat{};
    const bool grouped = quantize && format.groupSize > 0;
    const std::int64_t groupSize = grouped ? format.groupSize : cols;
    QuantizedTensor t;
    std::vector<QuantParams> params(static_cast<std::size_t>(rows));
    std::vector<float> rowBuf;
    auto findRowParams = [&](const Eigen::MatrixXd &src, std::int64_t c0, std::int64_t width) {
        rowBuf.resize(static_cast<std::size_t>(width));
        for (std::int64_t r = 0; r < rows; ++r) {
            for (std::int64_t k = 0; k < width; ++k)
                rowBuf[static_cast<std::size_t>(k)] = static_cast<float>(src(r, c0 + k));
            params[static_cast<std::size_t>(r)] = findParams(rowBuf.data(), width, format, false);
        }
    };
    auto storeParams = [&](std::int64_t group) {
        for (std::int64_t r = 0; r < rows; ++r) {
            t.scales[static_cast<std::size_t>(r * t.groupsPerRow() + group)] = params[static_cast<std::size_t>(r)].scale;
            t.zeros[static_cast<std::size_t>(r * t.groupsPerRow() + group)] = params[static_cast<std::size_t>(r)].zero;
        }
    };
    if (quantize) {
        t.rows = rows;
        t.cols = cols;
        t.format = format;
        t.codes.assign(static_cast<std::size_t>(rows * cols), 0);
        t.scales.assign(static_cast<std::size_t>(rows * t.groupsPerRow()), 1.0f);
        t.zeros.assign(static_cast<std::size_t>(rows * t.groupsPerRow()), 0.0f);
        if (!grouped) {
            if (format.groupSize == -1) {
                std::vector<float> all(static_cast<std::size_t>(rows * cols));
                for (std::int64_t r = 0; r < rows; ++r)
                    for (std::int64_t c = 0; c < cols; ++c)
                        all[static_cast<std::size_t>(r * cols + c)] = static_cast<float>(W(r, c));
                std::fill(params.begin(), params.end(), findParams(all.data(), rows * cols, format, false));
            } else {
                findRowParams(W, 0, cols);
            }
            storeParams(0);
        }
    }
    const int maxq = format.maxCode();

    std::vector<std::uint8_t> pruned(static_cast<std::size_t>(rows * cols), 0); // column-major
    std::vector<float> scoreBuf;
    std::vector<std::int64_t> order;
    Eigen::MatrixXd W1, Q1, Err1;
    for (std::int64_t i1 = 0; i1 < cols; i1 += options.blockSize) {
        const std::int64_t i2 = std::min<std::int64_t>(i1 + options.blockSize, cols);
        const std::int64_t count = i2 - i1;
        W1 = W.middleCols(i1, count);
        Q1.resize(rows, count);
        Err1.resize(rows, count);
        std::uint8_t *mask1 = pruned.data() + i1 * rows; // column-major: column i at mask1 + i * rows
        if (!pattern.isNM() && sparsity > 0.0) {
            // Row-major order of the [rows, count] block for tie-breaking.
            scoreBuf.resize(static_cast<std::size_t>(rows * count));
            for (std::int64_t r = 0; r < rows; ++r)
                for (std::int64_t i = 0; i < count; ++i) {
                    const double d = Hinv(i1 + i, i1 + i);
                    scoreBuf[static_cast<std::size_t>(r * count + i)] = static_cast<float>(W1(r, i) * W1(r, i) / (d * d));
                }
            const auto k = static_cast<std::int64_t>(std::floor(sparsity * static_cast<double>(rows * count)));
            order.resize(scoreBuf.size());
            std::iota(order.begin(), order.end(), 0);
            auto less = [&](std::int64_t a, std::int64_t b) {
                const float sa = scoreBuf[static_cast<std::size_t>(a)], sb = scoreBuf[static_cast<std::size_t>(b)];
                return sa < sb || (sa == sb && a < b);
            };
            if (k > 0 && k < static_cast<std::int64_t>(order.size()))
                std::nth_element(order.begin(), order.begin() + k, order.end(), less);
            for (std::int64_t j = 0; j < k; ++j) {
                const std::int64_t idx = order[static_cast<std::size_t>(j)];
                mask1[(idx % count) * rows + idx / count] = 1;
            }
        }
        for (std::int64_t i = 0; i < count; ++i) {
            const std::int64_t j = i1 + i;
            if (pattern.isNM() && i % pattern.m == 0) {
                for (std::int64_t r = 0; r < rows; ++r) {
                    // the M - N lowest of w² / d² among columns i..i+M-1 (lower column first on ties)
                    std::array<std::pair<double, int>, 64> s{};
                    for (int k = 0; k < pattern.m; ++k) {
                        const double d = Hinv(j + k, j + k);
                        s[static_cast<std::size_t>(k)] = {W1(r, i + k) * W1(r, i + k) / (d * d), k};
                    }
                    std::sort(s.begin(), s.begin() + pattern.m);
                    for (int k = 0; k < pattern.m - pattern.n; ++k)
                        mask1[(i + s[static_cast<std::size_t>(k)].second) * rows + r] = 1;
                }
            }
            if (grouped && j % groupSize == 0) {
                findRowParams(W, j, std::min(groupSize, cols - j)); // from W, not W1 (as GPTQ)
                storeParams(j / groupSize);
            }
            const double d = Hinv(j, j);
            for (std::int64_t r = 0; r < rows; ++r) {
                const double wv = W1(r, i);
                double q = mask1[i * rows + r] ? 0.0 : wv;
                if (quantize) {
                    const QuantParams p = params[static_cast<std::size_t>(r)];
                    const std::uint8_t code = mask1[i * rows + r] ? static_cast<std::uint8_t>(std::clamp(p.zero, 0.0f, float(maxq)))
                                                                  : quantizeCode(static_cast<float>(q), p, maxq);
                    t.codes[static_cast<std::size_t>(r * cols + j)] = code;
                    q = dequantizeCode(code, p);
                }
                Q1(r, i) = q;
                const double e = (wv - q) / d;
                Err1(r, i) = e;
                result.loss += 0.5 * e * e;
            }
            const std::int64_t rest = count - i - 1;
            if (rest > 0)
                W1.rightCols(rest).noalias() -= Err1.col(i) * Hinv.row(j).segment(j + 1, rest);
        }
        W.middleCols(i1, count) = Q1;
        if (i2 < cols)
            W.rightCols(cols - i2).noalias() -= Err1 * Hinv.block(i1, i2, count, cols - i2);
        if (feedback) {
            feedback->setProgress(static_cast<double>(i2) / static_cast<double>(cols));
            if (feedback->isCancelled())
                return unexpected(fail(ErrorCode::Cancelled, QStringLiteral("SparseGPT was cancelled")));
        }
    }
    result.weights.resize(static_cast<std::size_t>(rows * cols));
    for (std::int64_t r = 0; r < rows; ++r)
        for (std::int64_t c = 0; c < cols; ++c)
            result.weights[static_cast<std::size_t>(r * cols + c)] = static_cast<float>(W(r, c));
    if (quantize) {
        // The weights are exactly what the codes dequantize to (pruned: zero point -> 0).
        for (std::int64_t r = 0; r < rows; ++r)
            for (std::int64_t c = 0; c < cols; ++c)
                result.weights[static_cast<std::size_t>(r * cols + c)] = t.value(r, c);
        result.q = std::move(t);
    }
    return result;
}

} // namespace bitsmith::core

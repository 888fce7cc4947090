// mask.cpp: pruning masks and the magnitude / Wanda scores.
#include "mask.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace bitsmith::core {

namespace {

// Marks the `count` lowest of scores[first .. first+n) (stable: lower index first among ties).
void pruneLowest(std::span<const float> scores, std::int64_t first, std::int64_t n, std::int64_t count,
                 std::vector<std::int64_t> &order, std::vector<std::uint8_t> &mask)
{
    if (count <= 0)
        return;
    order.resize(static_cast<std::size_t>(n));
    std::iota(order.begin(), order.end(), first);
    auto less = [&](std::int64_t a, std::int64_t b) {
        const float sa = scores[static_cast<std::size_t>(a)], sb = scores[static_cast<std::size_t>(b)];
        return sa < sb || (sa == sb && a < b);
    };
    if (count < n)
        std::nth_element(order.begin(), order.begin() + count, order.end(), less);
    for (std::int64_t i = 0; i < count; ++i)
        mask[static_cast<std::size_t>(order[static_cast<std::size_t>(i)])] = 0;
}

} // namespace

Expected<void> validateSparsity(double sparsity, SparsityPattern pattern, std::int64_t cols)
{
    if (pattern.isNM()) {
        if (pattern.n <= 0 || pattern.m <= pattern.n)
            return unexpected(fail(ErrorCode::InvalidArgument, QStringLiteral("pattern %1 is invalid").arg(pattern.name()))
                                  .forParameter(QStringLiteral("pattern"))
                                  .withHint(QStringLiteral("use N:M with 0 < N < M, e.g. 2:4")));
        if (cols % pattern.m != 0)
            return unexpected(fail(ErrorCode::InvalidArgument, QStringLiteral("pattern %1 needs the input width (%2) to be a multiple of %3")
                                                                   .arg(pattern.name())
                                                                   .arg(cols)
                                                                   .arg(pattern.m))
                                  .forParameter(QStringLiteral("pattern"))
                                  .withHint(QStringLiteral("use unstructured sparsity for this layer, or skip it")));
        return {};
    }
    if (!(sparsity > 0.0 && sparsity < 1.0))
        return unexpected(fail(ErrorCode::InvalidArgument, QStringLiteral("sparsity %1 must be above 0 and below 1").arg(sparsity))
                              .forParameter(QStringLiteral("sparsity"))
                              .withHint(QStringLiteral("give the fraction of weights to remove, e.g. --sparsity 0.5, or --pattern 2:4")));
    return {};
}

Expected<std::vector<std::uint8_t>> selectMask(std::span<const float> scores, std::int64_t rows, std::int64_t cols,
                                               double sparsity, SparsityPattern pattern, MaskScope scope)
{
    if (rows < 0 || cols < 0 || static_cast<std::int64_t>(scores.size()) != rows * cols)
        return unexpected(fail(ErrorCode::Mismatch, QStringLiteral("%1 scores for a %2x%3 matrix").arg(scores.size()).arg(rows).arg(cols))
                              .forParameter(QStringLiteral("scores")));
    if (pattern.isNM()) {
        if (auto ok = validateSparsity(sparsity, pattern, cols); !ok)
            return unexpected(ok.error());
    } else if (!(sparsity >= 0.0 && sparsity < 1.0)) {
        return unexpected(fail(ErrorCode::InvalidArgument, QStringLiteral("sparsity %1 must be from 0 to below 1").arg(sparsity))
                              .forParameter(QStringLiteral("sparsity")));
    }
    for (float s : scores)
        if (std::isnan(s))
            return unexpected(fail(ErrorCode::InvalidArgument, QStringLiteral("pruning scores contain NaN"))
                                  .forParameter(QStringLiteral("scores"))
                                  .withHint(QStringLiteral("check the weights and the calibration activations for NaN/Inf")));
    std::vector<std::uint8_t> mask(scores.size(), 1);
    std::vector<std::int64_t> order;
    if (pattern.isNM()) {
        const std::int64_t prune = pattern.m - pattern.n;
        for (std::int64_t r = 0; r < rows; ++r)
            for (std::int64_t c = 0; c < cols; c += pattern.m)
                pruneLowest(scores, r * cols + c, pattern.m, prune, order, mask);
    } else if (scope == MaskScope::Row) {
        const auto prune = static_cast<std::int64_t>(std::floor(sparsity * static_cast<double>(cols)));
        for (std::int64_t r = 0; r < rows; ++r)
            pruneLowest(scores, r * cols, cols, prune, order, mask);
    } else {
        const auto prune = static_cast<std::int64_t>(std::floor(sparsity * static_cast<double>(rows * cols)));
        pruneLowest(scores, 0, rows * cols, prune, order, mask);
    }
    return mask;
}

std::vector<float> magnitudeScores(MatrixView w)
{
    std::vector<float> s(static_cast<std::size_t>(w.rows * w.cols));
    for (std::size_t i = 0; i < s.size(); ++i)
        s[i] = std::abs(w.data()[i]);
    return s;
}

std::vector<float> wandaScores(MatrixView w, std::span<const double> meanSquare, std::int64_t tokens)
{
    std::vector<float> norm(static_cast<std::size_t>(w.cols), 0.0f);
    for (std::int64_t c = 0; c < w.cols && c < static_cast<std::int64_t>(meanSquare.size()); ++c)
        norm[static_cast<std::size_t>(c)] = static_cast<float>(std::sqrt(meanSquare[static_cast<std::size_t>(c)] * static_cast<double>(tokens)));
    std::vector<float> s(static_cast<std::size_t>(w.rows * w.cols));
    for (std::int64_t r = 0; r < w.rows; ++r)
        for (std::int64_t c = 0; c < w.cols; ++c)
            s[static_cast<std::size_t>(r * w.cols + c)] = std::abs(w.data()[r * w.cols + c]) * norm[static_cast<std::size_t>(c)];
    return s;
}

std::vector<float> applyMask(MatrixView w, std::span<const std::uint8_t> mask)
{
    std::vector<float> out(static_cast<std::size_t>(w.rows * w.cols));
    for (std::size_t i = 0; i < out.size(); ++i)
        out[i] = mask[i] ? w.data()[i] : 0.0f;
    return out;
}

bool satisfiesPattern(MatrixView w, SparsityPattern pattern)
{
    if (!pattern.isNM())
        return true;
    if (w.cols % pattern.m != 0)
        return false;
    for (std::int64_t r = 0; r < w.rows; ++r)
        for (std::int64_t c = 0; c < w.cols; c += pattern.m) {
            int nonzero = 0;
            for (int k = 0; k < pattern.m; ++k)
                nonzero += w.data()[r * w.cols + c + k] != 0.0f;
            if (nonzero > pattern.n)
                return false;
        }
    return true;
}

} // namespace bitsmith::core

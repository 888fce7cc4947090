// calibration.cpp: calibration sequences and input statistics.
#include "calibration.h"

#include "core/random.h"

#include <algorithm>
#include <cmath>

namespace bitsmith::core {

Expected<std::vector<std::vector<std::int32_t>>> makeCalibrationSequences(std::span<const std::int32_t> tokens,
                                                                         int count, int length, std::uint64_t seed)
{
    if (tokens.size() < 2)
        return unexpected(fail(ErrorCode::InvalidArgument, QStringLiteral("the calibration text has fewer than 2 tokens"))
                              .forParameter(QStringLiteral("calib"))
                              .withHint(QStringLiteral("give a calibration text of at least a few thousand words")));
    if (count < 1 || length < 2)
        return unexpected(fail(ErrorCode::InvalidArgument, QStringLiteral("calibration needs >= 1 sequence of >= 2 tokens"))
                              .forParameter(QStringLiteral("calibration")));
    const auto n = static_cast<std::int64_t>(tokens.size());
    std::vector<std::vector<std::int32_t>> out;
    if (n < length) {
        out.emplace_back(tokens.begin(), tokens.end());
        return out;
    }
    if (n / length < count) { // not enough text for `count` distinct windows: use what fits
        for (std::int64_t start = 0; start + length <= n; start += length)
            out.emplace_back(tokens.begin() + start, tokens.begin() + start + length);
        return out;
    }
    std::uint64_t state = seed;
    for (int i = 0; i < count; ++i) {
        const auto start = static_cast<std::int64_t>(splitmix64(state) % static_cast<std::uint64_t>(n - length + 1));
        out.emplace_back(tokens.begin() + start, tokens.begin() + start + length);
    }
    return out;
}

InputStatistics::InputStatistics(std::int64_t features, bool withHessian, std::int64_t maxSampleRows, std::uint64_t seed)
    : m_features(features)
    , m_withHessian(withHessian)
    , m_sumAbs(static_cast<std::size_t>(features))
    , m_sumSquare(static_cast<std::size_t>(features))
    , m_meanAbs(static_cast<std::size_t>(features))
    , m_meanSquare(static_cast<std::size_t>(features))
    , m_maxAbs(static_cast<std::size_t>(features))
    , m_maxSampleRows(maxSampleRows)
    , m_rng(seed ^ 0x5EEDu)
{
    if (withHessian)
        m_sum = Eigen::MatrixXd::Zero(features, features);
}

void InputStatistics::add(const float *x, std::int64_t rows)
{
    using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
    Eigen::Map<const RowMat> X(x, rows, m_features);
    if (m_withHessian) {
        // Σ x xᵀ of this batch in f32 (fast), accumulated across batches in double.
        // Only the lower triangle is accumulated (no dense double temporary: at 8192 inputs that
        // is 0.5 GiB); hessian() mirrors it.
        Eigen::MatrixXf batch = Eigen::MatrixXf::Zero(m_features, m_features);
        batch.selfadjointView<Eigen::Lower>().rankUpdate(X.transpose());
        for (std::int64_t j = 0; j < m_features; ++j)
            for (std::int64_t i = j; i < m_features; ++i)
                m_sum(i, j) += static_cast<double>(batch(i, j));
        m_hessianValid = false;
    }
    for (std::int64_t r = 0; r < rows; ++r) {
        const float *row = x + r * m_features;
        for (std::int64_t c = 0; c < m_features; ++c) {
            const double v = row[c];
            m_sumAbs[static_cast<std::size_t>(c)] += std::fabs(v);
            m_sumSquare[static_cast<std::size_t>(c)] += v * v;
            m_maxAbs[static_cast<std::size_t>(c)] = std::max(m_maxAbs[static_cast<std::size_t>(c)], std::fabs(v));
        }
        // reservoir sampling keeps a uniform sample of all rows seen
        const std::int64_t seen = m_tokens + r;
        std::int64_t slot = -1;
        if (m_sampleRows < m_maxSampleRows)
            slot = m_sampleRows++;
        else if (const auto j = static_cast<std::int64_t>(splitmix64(m_rng) % static_cast<std::uint64_t>(seen + 1)); j < m_maxSampleRows)
            slot = j;
        if (slot >= 0) {
            if (m_samples.size() < static_cast<std::size_t>((slot + 1) * m_features))
                m_samples.resize(static_cast<std::size_t>((slot + 1) * m_features));
            std::copy_n(row, m_features, m_samples.begin() + slot * m_features);
        }
    }
    m_tokens += rows;
    for (std::size_t c = 0; c < m_meanAbs.size(); ++c) {
        m_meanAbs[c] = m_sumAbs[c] / static_cast<double>(m_tokens);
        m_meanSquare[c] = m_sumSquare[c] / static_cast<double>(m_tokens);
    }
}

const Eigen::MatrixXd &InputStatistics::hessian() const
{
    if (!m_hessianValid) {
        m_hessian.resize(m_features, m_features);
        const double f = m_tokens > 0 ? 2.0 / static_cast<double>(m_tokens) : 0.0;
        for (std::int64_t j = 0; j < m_features; ++j)
            for (std::int64_t i = j; i < m_features; ++i)
                m_hessian(i, j) = m_hessian(j, i) = m_sum(i, j) * f;
        m_hessianValid = true;
    }
    return m_hessian;
}

} // namespace bitsmith::core

// calibration.h: calibration token sequences and the statistics of linear-layer inputs over them.
#pragma once

#include "core/error.h"
#include "core/sdk/technique.h"

#include <Eigen/Core>

#include <cstdint>
#include <span>
#include <vector>

namespace bitsmith::core {

// Cuts `count` sequences of `length` tokens from `tokens` at seeded random offsets (the same seed
// gives the same sequences). If the text holds fewer than `count` non-overlapping sequences, the
// text is used in non-overlapping sequences (what fits); if it is shorter than `length`, one
// sequence of the whole text. Errors if the text has fewer than 2 tokens.
Expected<std::vector<std::vector<std::int32_t>>> makeCalibrationSequences(std::span<const std::int32_t> tokens,
                                                                         int count, int length, std::uint64_t seed);

// Accumulates H = (2/n) Σ x xᵀ (double), per-channel mean |x|, mean x², max |x|, and a seeded
// reservoir sample of input rows.
class InputStatistics final : public CalibrationStats
{
public:
    explicit InputStatistics(std::int64_t features, bool withHessian = true, std::int64_t maxSampleRows = 4096,
                             std::uint64_t seed = 0);
    void add(const float *x, std::int64_t rows);

    std::int64_t tokens() const override { return m_tokens; }
    std::int64_t features() const override { return m_features; }
    const Eigen::MatrixXd &hessian() const override;
    const std::vector<double> &meanAbs() const override { return m_meanAbs; }
    const std::vector<double> &meanSquare() const override { return m_meanSquare; }
    const std::vector<double> &maxAbs() const override { return m_maxAbs; }
    const std::vector<float> &samples() const override { return m_samples; }
    std::int64_t sampleRows() const override { return m_sampleRows; }

private:
    std::int64_t m_features;
    bool m_withHessian;
    std::int64_t m_tokens = 0;
    Eigen::MatrixXd m_sum; // Σ x xᵀ
    mutable Eigen::MatrixXd m_hessian;
    mutable bool m_hessianValid = false;
    std::vector<double> m_sumAbs, m_sumSquare, m_meanAbs, m_meanSquare, m_maxAbs;
    std::vector<float> m_samples;
    std::int64_t m_sampleRows = 0;
    std::int64_t m_maxSampleRows;
    std::uint64_t m_rng;
};

} // namespace bitsmith::core

// optimizer.h: AdamW (decoupled weight decay, bias correction; PyTorch's torch.optim.AdamW
// update order), global-norm gradient clipping (torch.nn.utils.clip_grad_norm_) and the
// learning-rate schedule (linear warm-up, then cosine decay to a floor).
#pragma once

#include "trainmodel.h"

#include <cstdint>
#include <vector>

namespace bitsmith::core::train {

struct AdamWSettings
{
    double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
    double weightDecay = 0.0; // applied to parameters with Parameter::decay only
};

class AdamW
{
public:
    AdamW() = default;
    AdamW(const TrainModel &model, AdamWSettings settings);

    // One update of every parameter with its current gradient at learning rate `lr`.
    void step(TrainModel &model, double lr);

    std::int64_t steps() const { return m_steps; }
    const AdamWSettings &settings() const { return m_settings; }
    // Moment buffers, one pair per parameter (for checkpoints).
    std::vector<std::vector<float>> &firstMoments() { return m_m; }
    std::vector<std::vector<float>> &secondMoments() { return m_v; }
    void setSteps(std::int64_t s) { m_steps = s; }

private:
    AdamWSettings m_settings;
    std::int64_t m_steps = 0;
    std::vector<std::vector<float>> m_m, m_v;
};

// Scales every gradient so that their global L2 norm is at most maxNorm (as PyTorch does:
// coefficient maxNorm / (norm + 1e-6), only when below 1). Returns the norm before clipping.
// maxNorm <= 0 only measures.
double clipGradients(TrainModel &model, double maxNorm);

// Learning rate of step `step` (0-based) of `total`: linear warm-up over `warmup` steps
// (lr · (step + 1) / warmup), then cosine from lr down to lr · minRatio at the last step.
double scheduledLearningRate(double lr, std::int64_t step, std::int64_t total, std::int64_t warmup, double minRatio);

} // namespace bitsmith::core::train

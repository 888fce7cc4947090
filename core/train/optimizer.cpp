// optimizer.cpp: AdamW, clipping and the schedule (see optimizer.h). The update follows
// torch.optim.AdamW's single-tensor path operation by operation in f32, so a step matches
// PyTorch to rounding.
#include "optimizer.h"

#include <cmath>

namespace bitsmith::core::train {

AdamW::AdamW(const TrainModel &model, AdamWSettings settings)
    : m_settings(settings)
{
    for (const Parameter &p : model.params()) {
        m_m.emplace_back(p.value.size(), 0.0f);
        m_v.emplace_back(p.value.size(), 0.0f);
    }
}

void AdamW::step(TrainModel &model, double lr)
{
    ++m_steps;
    const auto b1 = static_cast<float>(m_settings.beta1), b2 = static_cast<float>(m_settings.beta2);
    const double bc1 = 1.0 - std::pow(m_settings.beta1, static_cast<double>(m_steps));
    const double bc2 = 1.0 - std::pow(m_settings.beta2, static_cast<double>(m_steps));
    const auto stepSize = static_cast<float>(lr / bc1);
    const auto bc2Sqrt = static_cast<float>(std::sqrt(bc2));
    const auto eps = static_cast<float>(m_settings.eps);
    auto &params = model.params();
    for (std::size_t i = 0; i < params.size(); ++i) {
        Parameter &p = params[i];
        float *m = m_m[i].data(), *v = m_v[i].data();
        const float decay = p.decay ? static_cast<float>(1.0 - lr * m_settings.weightDecay) : 1.0f;
        for (std::size_t j = 0; j < p.value.size(); ++j) {
            const float g = p.grad[j];
            p.value[j] *= decay;
            m[j] = m[j] * b1 + g * (1.0f - b1); // torch 1.13: exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1)
            v[j] = v[j] * b2 + (1.0f - b2) * g * g;
            const float denom = std::sqrt(v[j]) / bc2Sqrt + eps;
            p.value[j] += -stepSize * (m[j] / denom);
        }
        if (!p.mask.empty()) // zeros of a sparse student stay exactly zero
            for (std::size_t j = 0; j < p.value.size(); ++j)
                if (!p.mask[j])
                    p.value[j] = 0.0f;
    }
    model.refreshEffective();
}

double clipGradients(TrainModel &model, double maxNorm)
{
    double sum = 0.0;
    for (const Parameter &p : model.params())
        for (float g : p.grad)
            sum += static_cast<double>(g) * g;
    const double norm = std::sqrt(sum);
    if (maxNorm > 0.0) {
        const double coef = maxNorm / (norm + 1e-6);
        if (coef < 1.0)
            for (Parameter &p : model.params())
                for (float &g : p.grad)
                    g *= static_cast<float>(coef);
    }
    return norm;
}

double scheduledLearningRate(double lr, std::int64_t step, std::int64_t total, std::int64_t warmup, double minRatio)
{
    if (step < warmup)
        return lr * static_cast<double>(step + 1) / static_cast<double>(warmup);
    const std::int64_t span = total - warmup - 1;
    const double progress = span > 0 ? std::min(1.0, static_cast<double>(step - warmup) / static_cast<double>(span)) : 1.0;
    const double floor = lr * minRatio;
    return floor + 0.5 * (lr - floor) * (1.0 + std::cos(M_PI * progress));
}

} // namespace bitsmith::core::train

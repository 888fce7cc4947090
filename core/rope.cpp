// rope.cpp: see rope.h. Each branch transcribes the matching _compute_*_parameters function of
// transformers' modeling_rope_utils.py (transformers 5.17 was the reference).
#include "rope.h"

#include <algorithm>
#include <numbers>

namespace bitsmith::core {

const char *ropeTypeName(RopeType t)
{
    switch (t) {
    case RopeType::Default: return "default";
    case RopeType::Linear: return "linear";
    case RopeType::Dynamic: return "dynamic";
    case RopeType::Llama3: return "llama3";
    case RopeType::Yarn: return "yarn";
    case RopeType::LongRope: return "longrope";
    }
    return "default";
}

namespace {

// 1 / base ** (arange(0, dim, 2).float() / dim), f32 as in torch.
std::vector<float> plainInverse(float base, int dim)
{
    std::vector<float> inv(static_cast<std::size_t>(dim / 2));
    for (int i = 0; i < dim / 2; ++i)
        inv[static_cast<std::size_t>(i)] = 1.0f / std::pow(base, static_cast<float>(2 * i) / static_cast<float>(dim));
    return inv;
}

} // namespace

std::vector<float> ropeInverseFrequencies(const RopeScaling &s, double theta, int dim, int maxPositions, int seqLen,
                                          double *attentionScaling)
{
    double attention = 1.0;
    const int originalMax = s.originalMaxPositions > 0 ? s.originalMaxPositions : maxPositions;
    std::vector<float> inv;
    switch (s.type) {
    case RopeType::Default:
        inv = plainInverse(static_cast<float>(theta), dim);
        break;
    case RopeType::Linear: {
        inv = plainInverse(static_cast<float>(theta), dim);
        const auto f = static_cast<float>(s.factor);
        for (float &v : inv)
            v /= f;
        break;
    }
    case RopeType::Dynamic: {
        if (seqLen <= maxPositions) { // transformers keeps the original frequencies
            inv = plainInverse(static_cast<float>(theta), dim);
            break;
        }
        // base * ((factor * seq_len / max_pos) - (factor - 1)) ** (dim / (dim - 2)), with seq_len
        // a tensor: f32 throughout
        const auto f = static_cast<float>(s.factor);
        const float ratio = f * static_cast<float>(seqLen) / static_cast<float>(maxPositions) - (f - 1.0f);
        const float base = static_cast<float>(theta) * std::pow(ratio, static_cast<float>(static_cast<double>(dim) / (dim - 2)));
        inv = plainInverse(base, dim);
        break;
    }
    case RopeType::Llama3: {
        inv = plainInverse(static_cast<float>(theta), dim);
        const auto factor = static_cast<float>(s.factor), low = static_cast<float>(s.lowFreqFactor),
                   high = static_cast<float>(s.highFreqFactor);
        const auto oldContext = static_cast<float>(originalMax);
        const double lowWavelen = static_cast<double>(originalMax) / s.lowFreqFactor;
        const double highWavelen = static_cast<double>(originalMax) / s.highFreqFactor;
        for (float &v : inv) {
            const float wavelen = static_cast<float>(2.0 * std::numbers::pi) / v;
            float scaled = wavelen > static_cast<float>(lowWavelen) ? v / factor : v;
            const float smooth = (oldContext / wavelen - low) / (high - low);
            const float smoothed = (1.0f - smooth) * scaled / factor + smooth * scaled;
            const bool medium = !(wavelen < static_cast<float>(highWavelen)) && !(wavelen > static_cast<float>(lowWavelen));
            v = medium ? smoothed : scaled;
        }
        break;
    }
    case RopeType::Yarn: {
        const double factor = s.factor > 0 ? s.factor : static_cast<double>(maxPositions) / originalMax;
        auto mscale = [](double scale, double m) { return scale <= 1 ? 1.0 : 0.1 * m * std::log(scale) + 1.0; };
        if (!std::isnan(s.attentionFactor))
            attention = s.attentionFactor;
        else if (s.mscale != 0 && s.mscaleAllDim != 0)
            attention = mscale(factor, s.mscale) / mscale(factor, s.mscaleAllDim);
        else
            attention = mscale(factor, 1.0);
        auto correctionDim = [&](double rotations) {
            return (dim * std::log(originalMax / (rotations * 2 * std::numbers::pi))) / (2 * std::log(theta));
        };
        double lo = correctionDim(s.betaFast), hi = correctionDim(s.betaSlow);
        if (s.truncate) {
            lo = std::floor(lo);
            hi = std::ceil(hi);
        }
        lo = std::max(lo, 0.0);
        hi = std::min(hi, static_cast<double>(dim - 1));
        if (lo == hi)
            hi += 0.001;
        const auto fLo = static_cast<float>(lo), fSpan = static_cast<float>(hi - lo);
        const auto fFactor = static_cast<float>(factor);
        inv.resize(static_cast<std::size_t>(dim / 2));
        for (int i = 0; i < dim / 2; ++i) {
            const float pos = std::pow(static_cast<float>(theta), static_cast<float>(2 * i) / static_cast<float>(dim));
            const float extrapolation = 1.0f / pos;
            const float interpolation = 1.0f / (fFactor * pos);
            const float ramp = std::clamp((static_cast<float>(i) - fLo) / fSpan, 0.0f, 1.0f);
            const float extrapolationFactor = 1.0f - ramp;
            inv[static_cast<std::size_t>(i)] = interpolation * (1.0f - extrapolationFactor) + extrapolation * extrapolationFactor;
        }
        break;
    }
    case RopeType::LongRope: {
        const double factor = s.factor > 0 ? s.factor : static_cast<double>(maxPositions) / originalMax;
        if (!std::isnan(s.attentionFactor))
            attention = s.attentionFactor;
        else
            attention = factor <= 1.0 ? 1.0 : std::sqrt(1 + std::log(factor) / std::log(static_cast<double>(originalMax)));
        const std::vector<double> &ext = seqLen > originalMax ? s.longFactor : s.shortFactor;
        inv.resize(static_cast<std::size_t>(dim / 2));
        for (int i = 0; i < dim / 2; ++i) {
            const float shape = static_cast<float>(2 * i) / static_cast<float>(dim);
            const float e = i < static_cast<int>(ext.size()) ? static_cast<float>(ext[static_cast<std::size_t>(i)]) : 1.0f;
            inv[static_cast<std::size_t>(i)] = 1.0f / (e * std::pow(static_cast<float>(theta), shape));
        }
        break;
    }
    }
    if (attentionScaling)
        *attentionScaling = attention;
    return inv;
}

} // namespace bitsmith::core

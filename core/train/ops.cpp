// ops.cpp: forward and backward of the decoder's operations (see ops.h). GEMMs go through
// Eigen (single-threaded here: core builds with EIGEN_DONT_PARALLELIZE); the rest are loops.
#include "ops.h"

#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <limits>

namespace bitsmith::core::train {

namespace {
using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using Map = Eigen::Map<RowMat>;
using CMap = Eigen::Map<const RowMat>;
using SMap = Eigen::Map<RowMat, 0, Eigen::OuterStride<>>;
using CSMap = Eigen::Map<const RowMat, 0, Eigen::OuterStride<>>;
} // namespace

void linearForward(const float *x, std::int64_t n, std::int64_t in, const float *w, const float *b, std::int64_t out,
                   float *y)
{
    Map Y(y, n, out);
    Y.noalias() = CMap(x, n, in) * CMap(w, out, in).transpose();
    if (b)
        Y.rowwise() += Eigen::Map<const Eigen::RowVectorXf>(b, out);
}

void linearBackward(const float *x, std::int64_t n, std::int64_t in, const float *w, std::int64_t out,
                    const float *dy, float *dx, float *dw, float *db)
{
    CMap DY(dy, n, out);
    if (dx)
        Map(dx, n, in).noalias() = DY * CMap(w, out, in);
    if (dw)
        Map(dw, out, in).noalias() += DY.transpose() * CMap(x, n, in);
    if (db)
        Eigen::Map<Eigen::RowVectorXf>(db, out) += DY.colwise().sum();
}

void rmsNormForward(const float *x, const float *w, std::int64_t n, std::int64_t cols, float eps, float *y,
                    float *invRms)
{
    for (std::int64_t r = 0; r < n; ++r) {
        const float *xr = x + r * cols;
        float sum = 0.0f;
        for (std::int64_t c = 0; c < cols; ++c)
            sum += xr[c] * xr[c];
        const float inv = 1.0f / std::sqrt(sum / static_cast<float>(cols) + eps);
        invRms[r] = inv;
        for (std::int64_t c = 0; c < cols; ++c)
            y[r * cols + c] = w[c] * (xr[c] * inv);
    }
}

void rmsNormBackward(const float *x, const float *w, const float *invRms, std::int64_t n, std::int64_t cols,
                     const float *dy, float *dx, float *dw)
{
    for (std::int64_t r = 0; r < n; ++r) {
        const float *xr = x + r * cols, *g = dy + r * cols;
        const float inv = invRms[r];
        double dot = 0.0; // Σ dy·w·x
        for (std::int64_t c = 0; c < cols; ++c) {
            dot += static_cast<double>(g[c]) * w[c] * xr[c];
            if (dw)
                dw[c] += g[c] * xr[c] * inv;
        }
        const float k = static_cast<float>(dot) * inv * inv * inv / static_cast<float>(cols);
        if (dx)
            for (std::int64_t c = 0; c < cols; ++c)
                dx[r * cols + c] = inv * g[c] * w[c] - xr[c] * k;
    }
}

std::vector<float> ropeInvFreq(int headDim, double theta)
{
    std::vector<float> f;
    const auto base = static_cast<float>(theta);
    for (int i = 0; i < headDim / 2; ++i)
        f.push_back(1.0f / std::pow(base, static_cast<float>(2 * i) / static_cast<float>(headDim)));
    return f;
}

void ropeApply(float *x, std::int64_t seqs, std::int64_t t, int heads, int headDim, std::span<const float> invFreq,
               bool inverse)
{
    const int half = headDim / 2;
    const float sign = inverse ? -1.0f : 1.0f;
    for (std::int64_t i = 0; i < t; ++i) {
        const auto pos = static_cast<float>(i);
        for (int j = 0; j < half; ++j) {
            // the same f32 angle as Transformer::rope, so training matches the runtime exactly
            const float angle = pos * invFreq[static_cast<std::size_t>(j)];
            const float c = std::cos(angle), s = sign * std::sin(angle);
            for (std::int64_t sq = 0; sq < seqs; ++sq)
                for (int h = 0; h < heads; ++h) {
                    float *v = x + ((sq * t + i) * heads + h) * headDim;
                    const float a = v[j], b = v[j + half];
                    v[j] = a * c - b * s;
                    v[j + half] = b * c + a * s;
                }
        }
    }
}

void attentionForward(const float *q, const float *k, const float *v, std::int64_t seqs, std::int64_t t, int nH,
                      int nKv, int hd, float *out, float *probs)
{
    const int group = nH / nKv;
    const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
    const std::int64_t qs = static_cast<std::int64_t>(nH) * hd, ks = static_cast<std::int64_t>(nKv) * hd;
    for (std::int64_t s = 0; s < seqs; ++s)
        for (int h = 0; h < nH; ++h) {
            const int g = h / group;
            CSMap Q(q + s * t * qs + h * hd, t, hd, Eigen::OuterStride<>(qs));
            CSMap K(k + s * t * ks + g * hd, t, hd, Eigen::OuterStride<>(ks));
            CSMap V(v + s * t * ks + g * hd, t, hd, Eigen::OuterStride<>(ks));
            SMap O(out + s * t * qs + h * hd, t, hd, Eigen::OuterStride<>(qs));
            Map P(probs + (s * nH + h) * t * t, t, t);
            P.noalias() = Q * K.transpose();
            for (std::int64_t i = 0; i < t; ++i) {
                float *row = P.row(i).data();
                float maxv = -std::numeric_limits<float>::infinity();
                for (std::int64_t j = 0; j <= i; ++j) {
                    row[j] *= scale;
                    maxv = std::max(maxv, row[j]);
                }
                float sum = 0.0f;
                for (std::int64_t j = 0; j <= i; ++j) {
                    row[j] = std::exp(row[j] - maxv);
                    sum += row[j];
                }
                const float inv = 1.0f / sum;
                for (std::int64_t j = 0; j <= i; ++j)
                    row[j] *= inv;
                for (std::int64_t j = i + 1; j < t; ++j)
                    row[j] = 0.0f;
            }
            O.noalias() = P * V;
        }
}

void attentionBackward(const float *q, const float *k, const float *v, const float *probs, std::int64_t seqs,
                       std::int64_t t, int nH, int nKv, int hd, const float *dout, float *dq, float *dk, float *dv)
{
    const int group = nH / nKv;
    const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
    const std::int64_t qs = static_cast<std::int64_t>(nH) * hd, ks = static_cast<std::int64_t>(nKv) * hd;
    std::fill_n(dk, seqs * t * ks, 0.0f);
    std::fill_n(dv, seqs * t * ks, 0.0f);
    RowMat dP(t, t);
    for (std::int64_t s = 0; s < seqs; ++s)
        for (int h = 0; h < nH; ++h) {
            const int g = h / group;
            CSMap Q(q + s * t * qs + h * hd, t, hd, Eigen::OuterStride<>(qs));
            CSMap K(k + s * t * ks + g * hd, t, hd, Eigen::OuterStride<>(ks));
            CSMap V(v + s * t * ks + g * hd, t, hd, Eigen::OuterStride<>(ks));
            CSMap dO(dout + s * t * qs + h * hd, t, hd, Eigen::OuterStride<>(qs));
            SMap dQ(dq + s * t * qs + h * hd, t, hd, Eigen::OuterStride<>(qs));
            SMap dK(dk + s * t * ks + g * hd, t, hd, Eigen::OuterStride<>(ks));
            SMap dV(dv + s * t * ks + g * hd, t, hd, Eigen::OuterStride<>(ks));
            CMap P(probs + (s * nH + h) * t * t, t, t);
            dV.noalias() += P.transpose() * dO;
            dP.noalias() = dO * V.transpose();
            // softmax backward: dS = P ∘ (dP − Σ_j dP∘P), then the 1/sqrt(hd) scale
            for (std::int64_t i = 0; i < t; ++i) {
                float dot = 0.0f;
                for (std::int64_t j = 0; j <= i; ++j)
                    dot += dP(i, j) * P(i, j);
                for (std::int64_t j = 0; j <= i; ++j)
                    dP(i, j) = P(i, j) * (dP(i, j) - dot) * scale;
                for (std::int64_t j = i + 1; j < t; ++j)
                    dP(i, j) = 0.0f;
            }
            dQ.noalias() = dP * K;
            dK.noalias() += dP.transpose() * Q;
        }
}

void swigluForward(const float *g, const float *u, std::int64_t count, float *a)
{
    for (std::int64_t i = 0; i < count; ++i)
        a[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
}

void swigluBackward(const float *g, const float *u, std::int64_t count, const float *da, float *dg, float *du)
{
    for (std::int64_t i = 0; i < count; ++i) {
        const float sig = 1.0f / (1.0f + std::exp(-g[i]));
        const float silu = g[i] * sig;
        du[i] = da[i] * silu;
        dg[i] = da[i] * u[i] * sig * (1.0f + g[i] * (1.0f - sig));
    }
}

namespace {
// log-softmax of one row of logits / T into `out` (vocab values).
void logSoftmax(const float *logits, std::int64_t vocab, float temperature, double *out)
{
    double maxv = -std::numeric_limits<double>::infinity();
    for (std::int64_t j = 0; j < vocab; ++j)
        maxv = std::max(maxv, static_cast<double>(logits[j]) / temperature);
    double sum = 0.0;
    for (std::int64_t j = 0; j < vocab; ++j)
        sum += std::exp(static_cast<double>(logits[j]) / temperature - maxv);
    const double lse = maxv + std::log(sum);
    for (std::int64_t j = 0; j < vocab; ++j)
        out[j] = static_cast<double>(logits[j]) / temperature - lse;
}
} // namespace

double crossEntropy(const float *logits, std::int64_t n, std::int64_t vocab, const std::int32_t *targets,
                    float *dlogits, float scale)
{
    std::vector<double> lp(static_cast<std::size_t>(vocab));
    double total = 0.0;
    for (std::int64_t r = 0; r < n; ++r) {
        logSoftmax(logits + r * vocab, vocab, 1.0f, lp.data());
        total -= lp[static_cast<std::size_t>(targets[r])];
        if (dlogits) {
            float *d = dlogits + r * vocab;
            const double k = static_cast<double>(scale) / static_cast<double>(n);
            for (std::int64_t j = 0; j < vocab; ++j)
                d[j] = static_cast<float>(std::exp(lp[static_cast<std::size_t>(j)]) * k);
            d[targets[r]] -= static_cast<float>(k);
        }
    }
    return total / static_cast<double>(n);
}

double klDivergence(const float *teacher, const float *student, std::int64_t n, std::int64_t vocab, float temperature,
                    float *dStudent, float scale)
{
    std::vector<double> lt(static_cast<std::size_t>(vocab)), ls(lt.size());
    double total = 0.0;
    const double k = static_cast<double>(scale) / (static_cast<double>(temperature) * static_cast<double>(n));
    for (std::int64_t r = 0; r < n; ++r) {
        logSoftmax(teacher + r * vocab, vocab, temperature, lt.data());
        logSoftmax(student + r * vocab, vocab, temperature, ls.data());
        double kl = 0.0;
        for (std::size_t j = 0; j < lt.size(); ++j) {
            const double pt = std::exp(lt[j]);
            kl += pt * (lt[j] - ls[j]);
            if (dStudent)
                dStudent[r * vocab + static_cast<std::int64_t>(j)] += static_cast<float>((std::exp(ls[j]) - pt) * k);
        }
        total += kl;
    }
    return total / static_cast<double>(n);
}

void embeddingForward(const float *table, std::int64_t cols, const std::int32_t *ids, std::int64_t n, float *x)
{
    for (std::int64_t i = 0; i < n; ++i)
        std::copy_n(table + static_cast<std::int64_t>(ids[i]) * cols, cols, x + i * cols);
}

void embeddingBackward(std::int64_t cols, const std::int32_t *ids, std::int64_t n, const float *dx, float *dTable)
{
    for (std::int64_t i = 0; i < n; ++i) {
        float *d = dTable + static_cast<std::int64_t>(ids[i]) * cols;
        for (std::int64_t c = 0; c < cols; ++c)
            d[c] += dx[i * cols + c];
    }
}

} // namespace bitsmith::core::train

// transformer.cpp: the forward pass. Layout conventions follow transformers' modeling_llama.py:
// rotate_half rotary embeddings (pairs i and i + headDim/2), attention scaled by 1/sqrt(headDim),
// softmax in f32, SwiGLU = down(silu(gate(x)) * up(x)).
#include "transformer.h"

#include <Eigen/Core>

#include <cmath>
#include <limits>

namespace bitsmith::core {

using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using StridedMap = Eigen::Map<RowMat, 0, Eigen::OuterStride<>>;
using ConstStridedMap = Eigen::Map<const RowMat, 0, Eigen::OuterStride<>>;

void rmsNorm(const float *x, const float *weight, std::int64_t rows, std::int64_t cols, float eps, float *out)
{
    for (std::int64_t r = 0; r < rows; ++r) {
        const float *xr = x + r * cols;
        float *o = out + r * cols;
        float sum = 0.0f;
        for (std::int64_t c = 0; c < cols; ++c)
            sum += xr[c] * xr[c];
        const float inv = 1.0f / std::sqrt(sum / static_cast<float>(cols) + eps);
        for (std::int64_t c = 0; c < cols; ++c)
            o[c] = weight[c] * (xr[c] * inv);
    }
}

Transformer::Transformer(std::shared_ptr<const Model> model, LinearBackend backend)
    : m_model(std::move(model))
{
    for (const BlockWeights &b : m_model->blocks()) {
        BlockKernels k;
        k.q = makeDenseLinear(b.q, b.qBias, backend);
        k.k = makeDenseLinear(b.k, b.kBias, backend);
        k.v = makeDenseLinear(b.v, b.vBias, backend);
        k.o = makeDenseLinear(b.o, b.oBias, backend);
        k.gate = makeDenseLinear(b.gate, b.gateBias, backend);
        k.up = makeDenseLinear(b.up, b.upBias, backend);
        k.down = makeDenseLinear(b.down, b.downBias, backend);
        m_blocks.push_back(std::move(k));
    }
    m_head = makeDenseLinear(m_model->lmHead(), {}, backend);
    const int hd = m_model->config().headDim;
    const float base = static_cast<float>(m_model->config().ropeTheta);
    for (int i = 0; i < hd / 2; ++i) // computed in f32 like transformers' default rope
        m_invFreq.push_back(1.0f / std::pow(base, static_cast<float>(2 * i) / static_cast<float>(hd)));
}

Transformer::Transformer(std::shared_ptr<const Model> model, std::vector<BlockKernels> blocks,
                         std::unique_ptr<LinearKernel> head)
    : m_model(std::move(model))
    , m_blocks(std::move(blocks))
    , m_head(std::move(head))
{
    const int hd = m_model->config().headDim;
    const float base = static_cast<float>(m_model->config().ropeTheta);
    for (int i = 0; i < hd / 2; ++i)
        m_invFreq.push_back(1.0f / std::pow(base, static_cast<float>(2 * i) / static_cast<float>(hd)));
}

KVCache Transformer::makeCache(int capacity) const
{
    const ModelConfig &c = m_model->config();
    KVCache cache;
    cache.capacity = capacity;
    const auto size = static_cast<std::size_t>(capacity) * c.numKvHeads * c.headDim;
    cache.keys.assign(static_cast<std::size_t>(c.numLayers), std::vector<float>(size));
    cache.values.assign(static_cast<std::size_t>(c.numLayers), std::vector<float>(size));
    return cache;
}

void Transformer::rope(float *x, std::int64_t t, int heads, int startPos) const
{
    const int hd = m_model->config().headDim;
    const int half = hd / 2;
    for (std::int64_t i = 0; i < t; ++i) {
        const float pos = static_cast<float>(startPos + i);
        for (int j = 0; j < half; ++j) {
            const float angle = pos * m_invFreq[static_cast<std::size_t>(j)];
            const float c = std::cos(angle), s = std::sin(angle);
            for (int h = 0; h < heads; ++h) {
                float *v = x + (i * heads + h) * hd;
                const float a = v[j], b = v[j + half];
                v[j] = a * c - b * s;
                v[j + half] = b * c + a * s;
            }
        }
    }
}

void Transformer::attention(int layer, const float *q, std::int64_t t, KVCache &cache, float *out) const
{
    const ModelConfig &c = m_model->config();
    const int hd = c.headDim, nH = c.numHeads, nKv = c.numKvHeads, group = nH / nKv;
    const int start = cache.length; // position of the first query
    const int total = start + static_cast<int>(t);
    const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
    const float *keys = cache.keys[static_cast<std::size_t>(layer)].data();
    const float *values = cache.values[static_cast<std::size_t>(layer)].data();
    const int window = c.slidingWindow;
#pragma omp parallel for schedule(static)
    for (int h = 0; h < nH; ++h) {
        const int g = h / group;
        ConstStridedMap Q(q + h * hd, t, hd, Eigen::OuterStride<>(nH * hd));
        ConstStridedMap K(keys + g * hd, total, hd, Eigen::OuterStride<>(nKv * hd));
        ConstStridedMap V(values + g * hd, total, hd, Eigen::OuterStride<>(nKv * hd));
        StridedMap O(out + h * hd, t, hd, Eigen::OuterStride<>(nH * hd));
        RowMat S = (Q * K.transpose()) * scale;
        for (std::int64_t i = 0; i < t; ++i) {
            const int pos = start + static_cast<int>(i);
            // keys allowed: j <= pos, and pos - j < window when a sliding window is set
            const int lo = window > 0 ? std::max(0, pos - window + 1) : 0;
            float maxv = -std::numeric_limits<float>::infinity();
            for (int j = lo; j <= pos; ++j)
                maxv = std::max(maxv, S(i, j));
            float sum = 0.0f;
            for (int j = 0; j < total; ++j) {
                if (j < lo || j > pos) {
                    S(i, j) = 0.0f;
                } else {
                    S(i, j) = std::exp(S(i, j) - maxv);
                    sum += S(i, j);
                }
            }
            S.row(i) /= sum;
        }
        O.noalias() = S * V;
    }
}

Expected<void> Transformer::forward(std::span<const std::int32_t> tokens, KVCache &cache, std::vector<float> &logits,
                                    bool lastOnly) const
{
    const ModelConfig &c = m_model->config();
    const auto t = static_cast<std::int64_t>(tokens.size());
    if (t == 0)
        return unexpected(fail(ErrorCode::InvalidArgument, QStringLiteral("no tokens to run")));
    if (cache.length + t > cache.capacity)
        return unexpected(fail(ErrorCode::InvalidArgument, QStringLiteral("%1 tokens exceed the cache capacity of %2")
                                                               .arg(cache.length + t)
                                                               .arg(cache.capacity))
                              .withHint(QStringLiteral("use a shorter text or a larger context")));
    if (cache.length + t > c.maxPositions)
        return unexpected(fail(ErrorCode::InvalidArgument, QStringLiteral("%1 tokens exceed the model's context of %2")
                                                               .arg(cache.length + t)
                                                               .arg(c.maxPositions))
                              .forParameter(QStringLiteral("ctx"))
                              .withHint(QStringLiteral("use --ctx %1 or less").arg(c.maxPositions)));
    for (std::int32_t id : tokens)
        if (id < 0 || id >= c.vocabSize)
            return unexpected(fail(ErrorCode::InvalidArgument, QStringLiteral("token id %1 outside the vocabulary of %2")
                                                                   .arg(id)
                                                                   .arg(c.vocabSize)));
    const std::int64_t h = c.hiddenSize, qDim = static_cast<std::int64_t>(c.numHeads) * c.headDim;
    const std::int64_t kvDim = static_cast<std::int64_t>(c.numKvHeads) * c.headDim, inter = c.intermediateSize;
    const auto eps = static_cast<float>(c.rmsNormEps);

    std::vector<float> x(static_cast<std::size_t>(t * h)), xn(x.size()), tmp(x.size());
    std::vector<float> q(static_cast<std::size_t>(t * qDim)), att(q.size());
    std::vector<float> gate(static_cast<std::size_t>(t * inter)), up(gate.size());
    const MatrixView &emb = m_model->embedding();
    for (std::int64_t i = 0; i < t; ++i)
        std::copy_n(emb.data + static_cast<std::int64_t>(tokens[static_cast<std::size_t>(i)]) * h, h, x.data() + i * h);

    for (std::size_t l = 0; l < m_blocks.size(); ++l) {
        const BlockWeights &w = m_model->blocks()[l];
        const BlockKernels &k = m_blocks[l];
        rmsNorm(x.data(), w.attnNorm.data, t, h, eps, xn.data());
        k.q->forward(xn.data(), t, q.data());
        float *kRows = cache.keys[l].data() + static_cast<std::int64_t>(cache.length) * kvDim;
        float *vRows = cache.values[l].data() + static_cast<std::int64_t>(cache.length) * kvDim;
        k.k->forward(xn.data(), t, kRows);
        k.v->forward(xn.data(), t, vRows);
        rope(q.data(), t, c.numHeads, cache.length);
        rope(kRows, t, c.numKvHeads, cache.length);
        attention(static_cast<int>(l), q.data(), t, cache, att.data());
        k.o->forward(att.data(), t, tmp.data());
        for (std::size_t i = 0; i < x.size(); ++i)
            x[i] += tmp[i];
        rmsNorm(x.data(), w.mlpNorm.data, t, h, eps, xn.data());
        k.gate->forward(xn.data(), t, gate.data());
        k.up->forward(xn.data(), t, up.data());
        for (std::size_t i = 0; i < gate.size(); ++i) {
            const float g = gate[i];
            gate[i] = g / (1.0f + std::exp(-g)) * up[i];
        }
        k.down->forward(gate.data(), t, tmp.data());
        for (std::size_t i = 0; i < x.size(); ++i)
            x[i] += tmp[i];
    }
    cache.length += static_cast<int>(t);

    const std::int64_t rows = lastOnly ? 1 : t;
    const float *src = x.data() + (t - rows) * h;
    rmsNorm(src, m_model->finalNorm().data, rows, h, eps, xn.data());
    logits.resize(static_cast<std::size_t>(rows * c.vocabSize));
    m_head->forward(xn.data(), rows, logits.data());
    return {};
}

} // namespace bitsmith::core

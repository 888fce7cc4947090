// transformer.cpp: the forward pass. Layout conventions follow transformers' modeling_llama.py
// (and modeling_qwen3.py for q/k norms):
// rotate_half rotary embeddings (pairs i and i + headDim/2), attention scaled by 1/sqrt(headDim),
// softmax in f32, SwiGLU = down(silu(gate(x)) * up(x)).
#include "transformer.h"

#include "core/kernels/int8linear.h"
#include "core/kernels/packedlinear.h"
#include "core/kernels/sparselinear.h"

#include <Eigen/Core>

#include <cmath>
#include <algorithm>
#include <map>
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

Transformer::Transformer(std::shared_ptr<const Model> model, LinearBackend backend, bool quantizedKernels)
    : m_model(std::move(model))
{
    // A layer recorded as quantized runs on its quantized kernel (packed b-bit weights or
    // int8 W8A8); every other one on the dense f32 backend.
    // Fraction of zeros of each linear, where known (computed at load for small models; large
    // ones are checked only when computeStatistics() ran): sparse kernels are tried only above 25%.
    std::map<QString, double> sparsity;
    for (const WeightInfo &w : m_model->weights())
        sparsity[w.name] = w.sparsity;
    auto kernel = [&](const QString &tensor, const MatrixView &w, const MatrixView &b) -> std::unique_ptr<LinearKernel> {
        const QuantizedLayer *q = quantizedKernels ? m_model->quantizedLayer(tensor) : nullptr;
        const auto found = sparsity.find(tensor);
        const bool maybeSparse = found != sparsity.end() && found->second >= 0.25;
        if (q && q->execution == Execution::W8A8) {
            if (auto k = makeInt8Linear(q->unpacked(), b.data()); k)
                return std::move(*k);
        } else if (q) {
            if (maybeSparse) {
                auto sparse = makeSparseQuantizedLinearIfPays(q->unpacked(), w, b); // 2:4 + int8 where it pays
                w.slot->releaseF32();
                if (sparse)
                    return sparse;
            }
            return makePackedLinear(q->packed, b.empty() ? nullptr : b.data());
        }
        // A pruned dense layer runs on a sparse kernel where that pays (2:4, or CSR when very
        // sparse); only with the oneDNN backend: the Eigen one must read the live weights.
        if (!q && quantizedKernels && backend == LinearBackend::OneDnn && maybeSparse) {
            auto sparse = makeSparseLinearIfPays(w, b);
            if (w.slot)
                w.slot->releaseF32(); // the sparse kernel keeps its own compact copy
            if (sparse)
                return sparse;
        }
        return makeDenseLinear(w, b, backend); // dense, or a quantized form no kernel accepts (exact anyway)
    };
    int i = 0;
    for (const BlockWeights &b : m_model->blocks()) {
        const QString p = QStringLiteral("model.layers.%1.").arg(i++);
        BlockKernels k;
        k.q = kernel(p + QStringLiteral("self_attn.q_proj.weight"), b.q, b.qBias);
        k.k = kernel(p + QStringLiteral("self_attn.k_proj.weight"), b.k, b.kBias);
        k.v = kernel(p + QStringLiteral("self_attn.v_proj.weight"), b.v, b.vBias);
        k.o = kernel(p + QStringLiteral("self_attn.o_proj.weight"), b.o, b.oBias);
        if (b.experts.empty()) {
            k.gate = kernel(p + QStringLiteral("mlp.gate_proj.weight"), b.gate, b.gateBias);
            k.up = kernel(p + QStringLiteral("mlp.up_proj.weight"), b.up, b.upBias);
            k.down = kernel(p + QStringLiteral("mlp.down_proj.weight"), b.down, b.downBias);
        } else {
            const int layer = i - 1;
            const ModelConfig &c = m_model->config();
            k.router = makeDenseLinear(b.router, {}, LinearBackend::Eigen); // tiny: [experts, hidden]
            for (int e = 0; e < static_cast<int>(b.experts.size()); ++e) {
                const ExpertWeights &ew = b.experts[static_cast<std::size_t>(e)];
                ExpertKernels ek;
                ek.gate = kernel(expertTensorName(c, layer, e, WeightRole::LinearGate), ew.gate, {});
                ek.up = kernel(expertTensorName(c, layer, e, WeightRole::LinearUp), ew.up, {});
                ek.down = kernel(expertTensorName(c, layer, e, WeightRole::LinearDown), ew.down, {});
                k.experts.push_back(std::move(ek));
            }
        }
        m_blocks.push_back(std::move(k));
    }
    m_head = kernel(QStringLiteral("lm_head.weight"), m_model->lmHead(), {});
    initRope();
}

void Transformer::initRope()
{
    const ModelConfig &c = m_model->config();
    // the frequencies of a sequence within the original context (dynamic: unscaled; longrope:
    // short factors); rope() asks again for longer ones when the type depends on the length
    m_invFreq = ropeInverseFrequencies(c.ropeScaling, c.ropeTheta, c.ropeDim(), c.maxPositions, 1, &m_ropeScaling);
    if (c.slidingRopeTheta > 0) // Gemma 3's local layers
        m_invFreqSliding = ropeInverseFrequencies(c.slidingRopeScaling, c.slidingRopeTheta, c.ropeDim(), c.maxPositions, 1,
                                                  &m_ropeScalingSliding);
}

const float *Transformer::normWeight(const MatrixView &w, std::vector<float> &scratch) const
{
    const float offset = m_model->config().normOffset;
    if (offset == 0.0f)
        return w.data();
    // Gemma: (1 + w), from the live weight (compression edits it in place)
    const float *v = w.data();
    scratch.resize(static_cast<std::size_t>(w.rows * w.cols));
    for (std::size_t i = 0; i < scratch.size(); ++i)
        scratch[i] = offset + v[i];
    return scratch.data();
}

Transformer::Transformer(std::shared_ptr<const Model> model, std::vector<BlockKernels> blocks,
                         std::unique_ptr<LinearKernel> head)
    : m_model(std::move(model))
    , m_blocks(std::move(blocks))
    , m_head(std::move(head))
{
    initRope();
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

void Transformer::rope(float *x, std::int64_t t, int heads, int startPos, int layer) const
{
    const ModelConfig &config = m_model->config();
    const int hd = config.headDim;
    const int half = config.ropeDim() / 2; // Phi's partial rotary: the dims past rotaryDim pass through
    const bool local = !m_invFreqSliding.empty() && config.windowOfLayer(layer) > 0;
    const RopeScaling &rs = local ? config.slidingRopeScaling : config.ropeScaling;
    // transformers recomputes dynamic / longrope frequencies from the call's last position
    std::vector<float> longer;
    const std::vector<float> *inv = local ? &m_invFreqSliding : &m_invFreq;
    if (ropeDependsOnLength(rs.type)) {
        longer = ropeInverseFrequencies(rs, local ? config.slidingRopeTheta : config.ropeTheta, config.ropeDim(), config.maxPositions,
                                        startPos + static_cast<int>(t));
        inv = &longer;
    }
    // cos and sin times the attention factor
    const auto scaling = static_cast<float>(local ? m_ropeScalingSliding : m_ropeScaling);
    for (std::int64_t i = 0; i < t; ++i) {
        const float pos = static_cast<float>(startPos + i);
        for (int j = 0; j < half; ++j) {
            const float angle = pos * (*inv)[static_cast<std::size_t>(j)];
            const float c = std::cos(angle) * scaling, s = std::sin(angle) * scaling;
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
    // transformers: head_dim ** -0.5, or query_pre_attn_scalar ** -0.5 (Gemma), as f32
    const auto scale = static_cast<float>(std::pow(c.queryPreAttnScalar > 0 ? c.queryPreAttnScalar : static_cast<double>(hd), -0.5));
    const auto softcap = static_cast<float>(c.attnSoftcap);
    const float *keys = cache.keys[static_cast<std::size_t>(layer)].data();
    const float *values = cache.values[static_cast<std::size_t>(layer)].data();
    const int window = c.windowOfLayer(layer);
    // Queries go in chunks: a chunk only needs the keys up to its last position (causal), which
    // halves the work of a long prefill, and its scores stay in cache.
    constexpr std::int64_t kChunk = 64;
    const std::int64_t chunks = (t + kChunk - 1) / kChunk;
#pragma omp parallel for collapse(2) schedule(static)
    for (int h = 0; h < nH; ++h) {
        for (std::int64_t ch = 0; ch < chunks; ++ch) {
            const int g = h / group;
            const std::int64_t i0 = ch * kChunk, rows = std::min(kChunk, t - i0);
            const int firstPos = start + static_cast<int>(i0), lastPos = firstPos + static_cast<int>(rows) - 1;
            // keys this chunk may see: [kLo, lastPos]
            const int kLo = window > 0 ? std::max(0, firstPos - window + 1) : 0;
            const int kCount = lastPos - kLo + 1;
            ConstStridedMap Q(q + i0 * nH * hd + h * hd, rows, hd, Eigen::OuterStride<>(nH * hd));
            ConstStridedMap K(keys + static_cast<std::int64_t>(kLo) * nKv * hd + g * hd, kCount, hd, Eigen::OuterStride<>(nKv * hd));
            ConstStridedMap V(values + static_cast<std::int64_t>(kLo) * nKv * hd + g * hd, kCount, hd, Eigen::OuterStride<>(nKv * hd));
            StridedMap O(out + i0 * nH * hd + h * hd, rows, hd, Eigen::OuterStride<>(nH * hd));
            RowMat S(rows, kCount);
            S.noalias() = Q * K.transpose();
            for (std::int64_t i = 0; i < rows; ++i) {
                const int pos = firstPos + static_cast<int>(i);
                // allowed keys: j <= pos, and pos - j < window when a sliding window is set
                const int lo = (window > 0 ? std::max(0, pos - window + 1) : 0) - kLo;
                const int hi = pos - kLo;
                float *row = S.row(i).data();
                float maxv = -std::numeric_limits<float>::infinity();
                for (int j = lo; j <= hi; ++j) {
                    row[j] *= scale;
                    if (softcap > 0) // Gemma 2: tanh soft-capping of the scores, before the mask
                        row[j] = std::tanh(row[j] / softcap) * softcap;
                    maxv = std::max(maxv, row[j]);
                }
                float sum = 0.0f;
                for (int j = 0; j < kCount; ++j) {
                    if (j < lo || j > hi) {
                        row[j] = 0.0f;
                    } else {
                        row[j] = std::exp(row[j] - maxv);
                        sum += row[j];
                    }
                }
                const float inv = 1.0f / sum;
                for (int j = lo; j <= hi; ++j)
                    row[j] *= inv;
            }
            O.noalias() = S * V;
        }
    }
}

Expected<void> Transformer::forward(std::span<const std::int32_t> tokens, KVCache &cache, std::vector<float> &logits,
                                    bool lastOnly, LinearInputHook *hook) const
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
    if (cache.length + t > c.contextLimit())
        return unexpected(fail(ErrorCode::InvalidArgument, QStringLiteral("%1 tokens exceed the model's context of %2")
                                                               .arg(cache.length + t)
                                                               .arg(c.contextLimit()))
                              .forParameter(QStringLiteral("ctx"))
                              .withHint(QStringLiteral("use --ctx %1 or less").arg(c.contextLimit())));
    for (std::int32_t id : tokens)
        if (id < 0 || id >= c.vocabSize)
            return unexpected(fail(ErrorCode::InvalidArgument, QStringLiteral("token id %1 outside the vocabulary of %2")
                                                                   .arg(id)
                                                                   .arg(c.vocabSize)));
    const std::int64_t h = c.hiddenSize;
    std::vector<float> x(static_cast<std::size_t>(t * h));
    embed(tokens, x.data());
    for (int l = 0; l < static_cast<int>(m_blocks.size()); ++l)
        runBlock(l, x.data(), t, cache, hook);
    cache.length += static_cast<int>(t);
    const std::int64_t rows = lastOnly ? 1 : t;
    head(x.data() + (t - rows) * h, rows, logits);
    return {};
}

void Transformer::embed(std::span<const std::int32_t> tokens, float *x) const
{
    const std::int64_t h = m_model->config().hiddenSize;
    const MatrixView &emb = m_model->embedding();
    for (std::size_t i = 0; i < tokens.size(); ++i)
        emb.rowsToF32(tokens[i], tokens[i] + 1, x + static_cast<std::int64_t>(i) * h); // one row, never the table
    if (m_model->config().embedScale) { // Gemma: times sqrt(hidden), the scale an f32 tensor
        const auto scale = static_cast<float>(std::sqrt(static_cast<double>(h)));
        for (std::size_t i = 0; i < tokens.size() * static_cast<std::size_t>(h); ++i)
            x[i] *= scale;
    }
}

void Transformer::runBlock(int layer, float *x, std::int64_t t, KVCache &cache, LinearInputHook *hook) const
{
    if (runAttention(layer, x, t, cache, hook))
        runMlp(layer, x, t, hook);
}

bool Transformer::runAttention(int layer, float *x, std::int64_t t, KVCache &cache, LinearInputHook *hook) const
{
    const ModelConfig &c = m_model->config();
    const std::int64_t h = c.hiddenSize, qDim = static_cast<std::int64_t>(c.numHeads) * c.headDim;
    const std::int64_t kvDim = static_cast<std::int64_t>(c.numKvHeads) * c.headDim;
    const auto eps = static_cast<float>(c.rmsNormEps);
    const auto n = static_cast<std::size_t>(t * h);
    std::vector<float> xn(n), tmp(n);
    std::vector<float> q(static_cast<std::size_t>(t * qDim)), att(q.size());
    const auto l = static_cast<std::size_t>(layer);
    const BlockWeights &w = m_model->blocks()[l];
    const BlockKernels &k = m_blocks[l];
    std::vector<float> scratch;
    rmsNorm(x, normWeight(w.attnNorm, scratch), t, h, eps, xn.data());
    if (hook && !hook->onLinearInput(layer, WeightRole::LinearQ, xn.data(), t, h))
        return false;
    k.q->forward(xn.data(), t, q.data());
    float *kRows = cache.keys[l].data() + static_cast<std::int64_t>(cache.length) * kvDim;
    float *vRows = cache.values[l].data() + static_cast<std::int64_t>(cache.length) * kvDim;
    k.k->forward(xn.data(), t, kRows);
    k.v->forward(xn.data(), t, vRows);
    if (c.qkNorm) { // Qwen3, Gemma 3: RMSNorm over each head, before rope
        rmsNorm(q.data(), normWeight(w.qNorm, scratch), t * c.numHeads, c.headDim, eps, q.data());
        rmsNorm(kRows, normWeight(w.kNorm, scratch), t * c.numKvHeads, c.headDim, eps, kRows);
    }
    rope(q.data(), t, c.numHeads, cache.length, layer);
    rope(kRows, t, c.numKvHeads, cache.length, layer);
    attention(layer, q.data(), t, cache, att.data());
    if (hook && !hook->onLinearInput(layer, WeightRole::LinearO, att.data(), t, qDim))
        return false;
    k.o->forward(att.data(), t, tmp.data());
    if (c.sandwichNorms) // Gemma: the attention output is normalized before the residual add
        rmsNorm(tmp.data(), normWeight(w.postAttnNorm, scratch), t, h, eps, tmp.data());
    for (std::size_t i = 0; i < n; ++i)
        x[i] += tmp[i];
    return true;
}

namespace {

// gate <- act(gate) * up, elementwise (SwiGLU, or GeGLU with PyTorch's tanh GELU).
void gatedActivation(Activation activation, float *gate, const float *up, std::size_t n)
{
    if (activation == Activation::GeluTanh) {
        // PyTorch's gelu(approximate="tanh"): 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
        const float beta = static_cast<float>(M_SQRT2 * M_2_SQRTPI * 0.5), kappa = 0.044715f;
        for (std::size_t i = 0; i < n; ++i) {
            const float g = gate[i];
            const float inner = beta * (g + kappa * g * g * g);
            gate[i] = 0.5f * g * (1.0f + std::tanh(inner)) * up[i];
        }
    } else {
        for (std::size_t i = 0; i < n; ++i) {
            const float g = gate[i];
            gate[i] = g / (1.0f + std::exp(-g)) * up[i];
        }
    }
}

} // namespace

void Transformer::route(int layer, const float *xn, std::int64_t t, std::vector<int> &experts, std::vector<float> &weights) const
{
    const ModelConfig &c = m_model->config();
    const int E = c.numExperts, K = c.expertsPerToken;
    std::vector<float> logits(static_cast<std::size_t>(t * E));
    m_blocks[static_cast<std::size_t>(layer)].router->forward(xn, t, logits.data());
    experts.resize(static_cast<std::size_t>(t * K));
    weights.resize(experts.size());
    std::vector<float> p(static_cast<std::size_t>(E));
    std::vector<int> order(static_cast<std::size_t>(E));
    for (std::int64_t r = 0; r < t; ++r) {
        // softmax over all experts (f32), then the top k; torch.topk keeps the lower index on ties
        const float *z = logits.data() + r * E;
        const float mx = *std::max_element(z, z + E);
        float sum = 0;
        for (int e = 0; e < E; ++e)
            sum += p[static_cast<std::size_t>(e)] = std::exp(z[e] - mx);
        for (float &v : p)
            v /= sum;
        for (int e = 0; e < E; ++e)
            order[static_cast<std::size_t>(e)] = e;
        std::partial_sort(order.begin(), order.begin() + K, order.end(), [&](int a, int b) {
            return p[static_cast<std::size_t>(a)] > p[static_cast<std::size_t>(b)]
                   || (p[static_cast<std::size_t>(a)] == p[static_cast<std::size_t>(b)] && a < b);
        });
        float top = 0;
        for (int k = 0; k < K; ++k)
            top += p[static_cast<std::size_t>(order[static_cast<std::size_t>(k)])];
        for (int k = 0; k < K; ++k) {
            const auto at = static_cast<std::size_t>(r * K + k);
            experts[at] = order[static_cast<std::size_t>(k)];
            weights[at] = p[static_cast<std::size_t>(experts[at])] / (c.normTopkProb ? top : 1.0f);
        }
    }
}

bool Transformer::runMoe(int layer, const float *xn, std::int64_t t, float *out, LinearInputHook *hook) const
{
    const ModelConfig &c = m_model->config();
    const std::int64_t h = c.hiddenSize, mi = c.moeIntermediateSize;
    const int E = c.numExperts, K = c.expertsPerToken;
    const BlockKernels &k = m_blocks[static_cast<std::size_t>(layer)];
    std::vector<int> chosen;
    std::vector<float> weight;
    route(layer, xn, t, chosen, weight);
    std::fill(out, out + t * h, 0.0f);
    // the tokens of each expert, in token order (as transformers' index_add_ gathers them)
    std::vector<std::vector<std::pair<std::int64_t, float>>> routed(static_cast<std::size_t>(E));
    for (std::int64_t r = 0; r < t; ++r)
        for (int j = 0; j < K; ++j) {
            const auto at = static_cast<std::size_t>(r * K + j);
            routed[static_cast<std::size_t>(chosen[at])].emplace_back(r, weight[at]);
        }
    std::vector<float> in, gate, up, y;
    for (int e = 0; e < E; ++e) {
        const auto &tokens = routed[static_cast<std::size_t>(e)];
        const bool all = hook && hook->wantsAllTokens(layer, e);
        const auto n = all ? t : static_cast<std::int64_t>(tokens.size());
        const float *src = xn;
        if (!all) {
            in.resize(static_cast<std::size_t>(n * h));
            for (std::int64_t i = 0; i < n; ++i)
                std::copy_n(xn + tokens[static_cast<std::size_t>(i)].first * h, h, in.data() + i * h);
            src = in.data();
        }
        if (hook && !hook->onExpertInput(layer, e, WeightRole::LinearGate, src, n, h))
            return false;
        if (n == 0) {
            if (hook && !hook->onExpertInput(layer, e, WeightRole::LinearDown, nullptr, 0, mi))
                return false;
            continue;
        }
        const ExpertKernels &ek = k.experts[static_cast<std::size_t>(e)];
        gate.resize(static_cast<std::size_t>(n * mi));
        up.resize(gate.size());
        ek.gate->forward(src, n, gate.data());
        ek.up->forward(src, n, up.data());
        gatedActivation(c.activation, gate.data(), up.data(), gate.size());
        if (hook && !hook->onExpertInput(layer, e, WeightRole::LinearDown, gate.data(), n, mi))
            return false;
        y.resize(static_cast<std::size_t>(n * h));
        ek.down->forward(gate.data(), n, y.data());
        for (std::size_t i = 0; i < tokens.size(); ++i) {
            const auto [row, wgt] = tokens[i];
            float *o = out + row * h;
            const float *yr = y.data() + (all ? row : static_cast<std::int64_t>(i)) * h;
            for (std::int64_t j = 0; j < h; ++j)
                o[j] += yr[j] * wgt;
        }
    }
    return true;
}

bool Transformer::runMlp(int layer, float *x, std::int64_t t, LinearInputHook *hook) const
{
    const ModelConfig &c = m_model->config();
    const std::int64_t h = c.hiddenSize, inter = c.intermediateSize;
    const auto eps = static_cast<float>(c.rmsNormEps);
    const auto n = static_cast<std::size_t>(t * h);
    std::vector<float> xn(n), tmp(n);
    const auto l = static_cast<std::size_t>(layer);
    const BlockWeights &w = m_model->blocks()[l];
    const BlockKernels &k = m_blocks[l];
    std::vector<float> scratch;
    rmsNorm(x, normWeight(w.mlpNorm, scratch), t, h, eps, xn.data());
    if (hook && !hook->onLinearInput(layer, WeightRole::LinearGate, xn.data(), t, h))
        return false;
    if (!k.experts.empty()) {
        if (!runMoe(layer, xn.data(), t, tmp.data(), hook))
            return false;
    } else {
        std::vector<float> gate(static_cast<std::size_t>(t * inter)), up(gate.size());
        k.gate->forward(xn.data(), t, gate.data());
        k.up->forward(xn.data(), t, up.data());
        gatedActivation(c.activation, gate.data(), up.data(), gate.size());
        if (hook && !hook->onLinearInput(layer, WeightRole::LinearDown, gate.data(), t, inter))
            return false;
        k.down->forward(gate.data(), t, tmp.data());
    }
    if (c.sandwichNorms) // Gemma: post_feedforward_layernorm
        rmsNorm(tmp.data(), normWeight(w.postMlpNorm, scratch), t, h, eps, tmp.data());
    for (std::size_t i = 0; i < n; ++i)
        x[i] += tmp[i];
    return true;
}

void Transformer::head(const float *x, std::int64_t rows, std::vector<float> &logits) const
{
    const ModelConfig &c = m_model->config();
    std::vector<float> xn(static_cast<std::size_t>(rows * c.hiddenSize));
    std::vector<float> scratch;
    rmsNorm(x, normWeight(m_model->finalNorm(), scratch), rows, c.hiddenSize, static_cast<float>(c.rmsNormEps), xn.data());
    logits.resize(static_cast<std::size_t>(rows * c.vocabSize));
    m_head->forward(xn.data(), rows, logits.data());
    if (c.finalSoftcap > 0) { // Gemma 2: logits / cap -> tanh -> * cap
        const auto cap = static_cast<float>(c.finalSoftcap);
        for (float &v : logits)
            v = std::tanh(v / cap) * cap;
    }
}

} // namespace bitsmith::core

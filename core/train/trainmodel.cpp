// trainmodel.cpp: parameters, forward with saved activations, and backward of the decoder
// (see trainmodel.h). The op-level passes live in ops.cpp.
#include "trainmodel.h"

#include "core/quant/quantizer.h" // quantizeCode, dequantizeCode
#include "core/random.h"          // splitmix64, uniform01
#include "ops.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace bitsmith::core::train {

namespace {
QString blockName(int l, const char *suffix)
{
    return QStringLiteral("model.layers.%1.").arg(l) + QLatin1String(suffix);
}
} // namespace

int TrainModel::add(QString name, std::int64_t rows, std::int64_t cols, const float *data, bool decay)
{
    Parameter p;
    p.name = std::move(name);
    p.rows = rows;
    p.cols = cols;
    p.value.assign(data, data + rows * cols);
    p.grad.assign(p.value.size(), 0.0f);
    p.decay = decay;
    m_params.push_back(std::move(p));
    return static_cast<int>(m_params.size()) - 1;
}

void TrainModel::rebuildIndex()
{
    m_blocks.assign(static_cast<std::size_t>(m_config.numLayers), {});
    m_embedding = m_finalNorm = m_lmHead = -1;
    const std::pair<const char *, int TrainBlock::*> fields[] = {
        {"input_layernorm.weight", &TrainBlock::attnNorm},  {"self_attn.q_proj.weight", &TrainBlock::q},
        {"self_attn.k_proj.weight", &TrainBlock::k},        {"self_attn.v_proj.weight", &TrainBlock::v},
        {"self_attn.o_proj.weight", &TrainBlock::o},        {"self_attn.q_proj.bias", &TrainBlock::qBias},
        {"self_attn.k_proj.bias", &TrainBlock::kBias},      {"self_attn.v_proj.bias", &TrainBlock::vBias},
        {"self_attn.o_proj.bias", &TrainBlock::oBias},      {"post_attention_layernorm.weight", &TrainBlock::mlpNorm},
        {"mlp.gate_proj.weight", &TrainBlock::gate},        {"mlp.up_proj.weight", &TrainBlock::up},
        {"mlp.down_proj.weight", &TrainBlock::down},        {"mlp.gate_proj.bias", &TrainBlock::gateBias},
        {"mlp.up_proj.bias", &TrainBlock::upBias},          {"mlp.down_proj.bias", &TrainBlock::downBias},
    };
    for (int i = 0; i < static_cast<int>(m_params.size()); ++i) {
        const QString &n = m_params[static_cast<std::size_t>(i)].name;
        if (n == QLatin1String("model.embed_tokens.weight"))
            m_embedding = i;
        else if (n == QLatin1String("model.norm.weight"))
            m_finalNorm = i;
        else if (n == QLatin1String("lm_head.weight"))
            m_lmHead = i;
        else if (n.startsWith(QLatin1String("model.layers."))) {
            const int l = n.section(QLatin1Char('.'), 2, 2).toInt();
            const QString rest = n.section(QLatin1Char('.'), 3);
            for (const auto &[suffix, field] : fields)
                if (rest == QLatin1String(suffix) && l >= 0 && l < m_config.numLayers)
                    m_blocks[static_cast<std::size_t>(l)].*field = i;
        }
    }
    m_invFreq = ropeInvFreq(m_config.headDim, m_config.ropeTheta);
}

Expected<TrainModel> TrainModel::fromModel(const Model &model, bool freezeZeros)
{
    TrainModel m;
    m.m_config = model.config();
    if (m.m_config.slidingWindow > 0)
        return unexpected(fail(ErrorCode::Unsupported, QStringLiteral("training does not support sliding-window attention"))
                              .inFile(model.folder()));
    if (m.m_config.sandwichNorms || m.m_config.architecture == Architecture::Phi3 || m.m_config.isMoe())
        return unexpected(fail(ErrorCode::Unsupported, QStringLiteral("distillation does not support %1 yet").arg(m.m_config.architectureName))
                              .inFile(model.folder())
                              .withHint(QStringLiteral("evaluation, compression and export support this model; distill a Llama/Mistral/Qwen2 model with default rope")));
    if (m.m_config.qkNorm || m.m_config.ropeScaling.type != RopeType::Default)
        return unexpected(fail(ErrorCode::Unsupported,
                               QStringLiteral("distillation does not support %1 yet")
                                   .arg(m.m_config.qkNorm ? QStringLiteral("q/k norms (Qwen3)")
                                                          : QStringLiteral("rope type '%1'").arg(QLatin1String(ropeTypeName(m.m_config.ropeScaling.type)))))
                              .inFile(model.folder())
                              .withHint(QStringLiteral("evaluation, compression and export support this model; distill a Llama/Mistral/Qwen2 model with default rope")));
    for (const WeightInfo &w : model.weights()) {
        const MatrixView v = model.weight(w.name);
        if (v.empty())
            return unexpected(fail(ErrorCode::Format, QStringLiteral("no f32 view of a weight")).forTensor(w.name));
        const bool matrix = isLinearRole(w.role) || w.role == WeightRole::Embedding || w.role == WeightRole::LmHead;
        const int i = m.add(w.name, v.rows, v.cols, v.data(), matrix);
        Parameter &p = m.m_params[static_cast<std::size_t>(i)];
        if (const QuantizedLayer *q = model.quantizedLayer(w.name)) {
            p.grid = q->unpacked();
            p.grid->codes.clear();
            p.grid->codes.shrink_to_fit();
            p.execution = q->execution;
            p.effective.resize(p.value.size());
        } else if (freezeZeros && isLinearRole(w.role)) {
            if (std::count(p.value.begin(), p.value.end(), 0.0f) > 0) {
                p.mask.resize(p.value.size());
                for (std::size_t j = 0; j < p.value.size(); ++j)
                    p.mask[j] = p.value[j] != 0.0f ? 1 : 0;
            }
        }
    }
    m.rebuildIndex();
    if (m.m_embedding < 0 || m.m_finalNorm < 0 || (!m.m_config.tieWordEmbeddings && m.m_lmHead < 0))
        return unexpected(fail(ErrorCode::Format, QStringLiteral("the model lacks its embedding, final norm or head")).inFile(model.folder()));
    for (std::size_t l = 0; l < m.m_blocks.size(); ++l) {
        const TrainBlock &b = m.m_blocks[l];
        if (b.attnNorm < 0 || b.q < 0 || b.k < 0 || b.v < 0 || b.o < 0 || b.mlpNorm < 0 || b.gate < 0 || b.up < 0 || b.down < 0)
            return unexpected(fail(ErrorCode::Format, QStringLiteral("block %1 is incomplete").arg(l)).inFile(model.folder()));
    }
    m.refreshEffective();
    return m;
}

Expected<TrainModel> TrainModel::architectureStudent(const Model &teacher, const QString &spec, std::uint64_t seed)
{
    auto base = fromModel(teacher, false);
    if (!base)
        return base;
    TrainModel &t = *base;
    for (Parameter &p : t.m_params) { // a dense student: quantized teachers give their f32 values
        p.grid.reset();
        p.effective.clear();
    }
    std::vector<int> keepBlocks(static_cast<std::size_t>(t.m_config.numLayers));
    std::iota(keepBlocks.begin(), keepBlocks.end(), 0);
    double mlpRatio = 1.0;
    bool randomInit = false;
    for (const QString &partRaw : spec.split(QLatin1Char(','), Qt::SkipEmptyParts)) {
        const QString part = partRaw.trimmed();
        const QString key = part.section(QLatin1Char(':'), 0, 0), val = part.section(QLatin1Char(':'), 1);
        bool ok = false;
        if (key == QLatin1String("layers") && val == QLatin1String("every-other")) {
            keepBlocks.clear();
            for (int l = 0; l < t.m_config.numLayers; l += 2)
                keepBlocks.push_back(l);
        } else if (key == QLatin1String("layers") && (val.toInt(&ok), ok)) {
            const int k = val.toInt();
            if (k < 1 || k > t.m_config.numLayers)
                return unexpected(fail(ErrorCode::InvalidArgument, QStringLiteral("layers:%1 is outside 1..%2").arg(k).arg(t.m_config.numLayers))
                                      .forParameter(QStringLiteral("student")));
            keepBlocks.resize(static_cast<std::size_t>(k));
        } else if (key == QLatin1String("mlp") && (val.toDouble(&ok), ok) && val.toDouble() > 0.0 && val.toDouble() <= 1.0) {
            mlpRatio = val.toDouble();
        } else if (part == QLatin1String("init:random")) {
            randomInit = true;
        } else {
            return unexpected(fail(ErrorCode::InvalidArgument, QStringLiteral("unknown student change '%1'").arg(part))
                                  .forParameter(QStringLiteral("student"))
                                  .withHint(QStringLiteral("use layers:every-other, layers:K, mlp:R (0 < R <= 1), init:random, or a model folder")));
        }
    }
    const auto inter = static_cast<std::int64_t>(t.m_config.intermediateSize);
    const auto keepInter = std::max<std::int64_t>(1, std::llround(mlpRatio * static_cast<double>(inter)));

    TrainModel s;
    s.m_config = t.m_config;
    s.m_config.numLayers = static_cast<int>(keepBlocks.size());
    s.m_config.intermediateSize = static_cast<int>(keepInter);
    auto copy = [&](const Parameter &p, const QString &name) {
        s.m_params.push_back(p);
        s.m_params.back().name = name;
        s.m_params.back().mask.clear();
    };
    for (const Parameter &p : t.m_params)
        if (p.name == QLatin1String("model.embed_tokens.weight"))
            copy(p, p.name);
    for (std::size_t nl = 0; nl < keepBlocks.size(); ++nl) {
        const int ol = keepBlocks[nl];
        const TrainBlock &b = t.m_blocks[static_cast<std::size_t>(ol)];
        // MLP neurons kept: the largest ‖gate_j‖·‖up_j‖·‖down_:,j‖, in their original order.
        std::vector<std::int64_t> neurons(static_cast<std::size_t>(inter));
        std::iota(neurons.begin(), neurons.end(), 0);
        if (keepInter < inter) {
            const Parameter &g = t.m_params[static_cast<std::size_t>(b.gate)], &u = t.m_params[static_cast<std::size_t>(b.up)],
                            &d = t.m_params[static_cast<std::size_t>(b.down)];
            std::vector<double> score(static_cast<std::size_t>(inter));
            for (std::int64_t j = 0; j < inter; ++j) {
                double gn = 0, un = 0, dn = 0;
                for (std::int64_t c = 0; c < g.cols; ++c) {
                    gn += double(g.value[j * g.cols + c]) * g.value[j * g.cols + c];
                    un += double(u.value[j * u.cols + c]) * u.value[j * u.cols + c];
                }
                for (std::int64_t r = 0; r < d.rows; ++r)
                    dn += double(d.value[r * d.cols + j]) * d.value[r * d.cols + j];
                score[static_cast<std::size_t>(j)] = std::sqrt(gn * un * dn);
            }
            std::stable_sort(neurons.begin(), neurons.end(), [&](auto a, auto c) { return score[a] > score[c]; });
            neurons.resize(static_cast<std::size_t>(keepInter));
            std::sort(neurons.begin(), neurons.end());
        }
        for (const Parameter &p : t.m_params) {
            const QString prefix = QStringLiteral("model.layers.%1.").arg(ol);
            if (!p.name.startsWith(prefix))
                continue;
            const QString rest = p.name.mid(prefix.size());
            const QString name = QStringLiteral("model.layers.%1.").arg(nl) + rest;
            if (keepInter < inter && (rest.startsWith(QLatin1String("mlp.gate_proj")) || rest.startsWith(QLatin1String("mlp.up_proj")))) {
                Parameter q = p; // rows = neurons (weight [inter, hidden] or bias [1, inter])
                const bool bias = p.rows == 1;
                const std::int64_t width = bias ? 1 : p.cols;
                q.value.clear();
                for (std::int64_t j : neurons)
                    q.value.insert(q.value.end(), p.value.begin() + j * width, p.value.begin() + (j + 1) * width);
                if (bias)
                    q.cols = keepInter;
                else
                    q.rows = keepInter;
                q.grad.assign(q.value.size(), 0.0f);
                copy(q, name);
            } else if (keepInter < inter && rest == QLatin1String("mlp.down_proj.weight")) {
                Parameter q = p; // [hidden, inter]: keep columns
                q.cols = keepInter;
                q.value.clear();
                for (std::int64_t r = 0; r < p.rows; ++r)
                    for (std::int64_t j : neurons)
                        q.value.push_back(p.value[static_cast<std::size_t>(r * p.cols + j)]);
                q.grad.assign(q.value.size(), 0.0f);
                copy(q, name);
            } else {
                copy(p, name);
            }
        }
    }
    for (const Parameter &p : t.m_params)
        if (p.name == QLatin1String("model.norm.weight") || p.name == QLatin1String("lm_head.weight"))
            copy(p, p.name);
    if (randomInit) {
        std::uint64_t state = seed ^ 0x5EEDu;
        for (Parameter &p : s.m_params) {
            const bool norm = p.name.endsWith(QLatin1String("norm.weight"));
            const bool bias = p.name.endsWith(QLatin1String(".bias"));
            for (float &v : p.value) {
                if (norm || bias) {
                    v = norm ? 1.0f : 0.0f;
                } else { // Box-Muller normal, std 0.02 (the Llama initializer_range)
                    const double u1 = std::max(uniform01(state), 1e-300), u2 = uniform01(state);
                    v = static_cast<float>(0.02 * std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2));
                }
            }
        }
    }
    s.rebuildIndex();
    return s;
}

const Parameter *TrainModel::find(const QString &name) const
{
    for (const Parameter &p : m_params)
        if (p.name == name)
            return &p;
    return nullptr;
}

std::int64_t TrainModel::parameterCount() const
{
    std::int64_t n = 0;
    for (const Parameter &p : m_params)
        n += p.size();
    return n;
}

void TrainModel::refreshEffective()
{
    for (Parameter &p : m_params) {
        if (!p.grid)
            continue;
        const QuantizedTensor &g = *p.grid;
        const int maxq = g.format.maxCode();
        for (std::int64_t r = 0; r < p.rows; ++r)
            for (std::int64_t c = 0; c < p.cols; ++c) {
                const std::int64_t grp = g.groupOf(c);
                const QuantParams qp{g.scale(r, grp), g.zero(r, grp)};
                const auto i = static_cast<std::size_t>(r * p.cols + c);
                p.effective[i] = dequantizeCode(quantizeCode(p.value[i], qp, maxq), qp);
            }
    }
}

QuantizedTensor TrainModel::quantizedResult(const Parameter &p) const
{
    QuantizedTensor q = *p.grid;
    const int maxq = q.format.maxCode();
    q.codes.resize(static_cast<std::size_t>(p.size()));
    for (std::int64_t r = 0; r < p.rows; ++r)
        for (std::int64_t c = 0; c < p.cols; ++c) {
            const std::int64_t grp = q.groupOf(c);
            const auto i = static_cast<std::size_t>(r * p.cols + c);
            q.codes[i] = quantizeCode(p.value[i], QuantParams{q.scale(r, grp), q.zero(r, grp)}, maxq);
        }
    return q;
}

void TrainModel::maskGradients()
{
    for (Parameter &p : m_params)
        if (!p.mask.empty())
            for (std::size_t i = 0; i < p.grad.size(); ++i)
                if (!p.mask[i])
                    p.grad[i] = 0.0f;
}

void TrainModel::zeroGrad()
{
    for (Parameter &p : m_params)
        std::fill(p.grad.begin(), p.grad.end(), 0.0f);
}

void TrainModel::forward(const std::int32_t *ids, std::int64_t seqs, std::int64_t t, Tape &tape) const
{
    const ModelConfig &c = m_config;
    const std::int64_t n = seqs * t, h = c.hiddenSize, inter = c.intermediateSize;
    const std::int64_t qDim = static_cast<std::int64_t>(c.numHeads) * c.headDim;
    const std::int64_t kvDim = static_cast<std::int64_t>(c.numKvHeads) * c.headDim;
    const auto eps = static_cast<float>(c.rmsNormEps);
    auto P = [&](int i) { return i < 0 ? nullptr : m_params[static_cast<std::size_t>(i)].forwardData(); };
    auto sz = [](std::int64_t k) { return static_cast<std::size_t>(k); };

    tape.seqs = seqs;
    tape.t = t;
    tape.ids.assign(ids, ids + n);
    tape.blocks.resize(m_blocks.size());
    std::vector<float> x(sz(n * h)), tmp(sz(n * h));
    embeddingForward(P(m_embedding), h, ids, n, x.data());
    for (std::size_t l = 0; l < m_blocks.size(); ++l) {
        const TrainBlock &b = m_blocks[l];
        Tape::Block &s = tape.blocks[l];
        s.xIn = x;
        s.xn1.resize(sz(n * h));
        s.r1.resize(sz(n));
        rmsNormForward(x.data(), P(b.attnNorm), n, h, eps, s.xn1.data(), s.r1.data());
        s.q.resize(sz(n * qDim));
        s.k.resize(sz(n * kvDim));
        s.v.resize(sz(n * kvDim));
        linearForward(s.xn1.data(), n, h, P(b.q), P(b.qBias), qDim, s.q.data());
        linearForward(s.xn1.data(), n, h, P(b.k), P(b.kBias), kvDim, s.k.data());
        linearForward(s.xn1.data(), n, h, P(b.v), P(b.vBias), kvDim, s.v.data());
        ropeApply(s.q.data(), seqs, t, c.numHeads, c.headDim, m_invFreq, false);
        ropeApply(s.k.data(), seqs, t, c.numKvHeads, c.headDim, m_invFreq, false);
        s.probs.resize(sz(seqs * c.numHeads * t * t));
        s.att.resize(sz(n * qDim));
        attentionForward(s.q.data(), s.k.data(), s.v.data(), seqs, t, c.numHeads, c.numKvHeads, c.headDim, s.att.data(),
                         s.probs.data());
        linearForward(s.att.data(), n, qDim, P(b.o), P(b.oBias), h, tmp.data());
        for (std::size_t i = 0; i < x.size(); ++i)
            x[i] += tmp[i];
        s.xMid = x;
        s.xn2.resize(sz(n * h));
        s.r2.resize(sz(n));
        rmsNormForward(x.data(), P(b.mlpNorm), n, h, eps, s.xn2.data(), s.r2.data());
        s.g.resize(sz(n * inter));
        s.u.resize(sz(n * inter));
        s.a.resize(sz(n * inter));
        linearForward(s.xn2.data(), n, h, P(b.gate), P(b.gateBias), inter, s.g.data());
        linearForward(s.xn2.data(), n, h, P(b.up), P(b.upBias), inter, s.u.data());
        swigluForward(s.g.data(), s.u.data(), n * inter, s.a.data());
        linearForward(s.a.data(), n, inter, P(b.down), P(b.downBias), h, tmp.data());
        for (std::size_t i = 0; i < x.size(); ++i)
            x[i] += tmp[i];
    }
    tape.xFinal = x;
    tape.xnf.resize(sz(n * h));
    tape.rf.resize(sz(n));
    rmsNormForward(x.data(), P(m_finalNorm), n, h, eps, tape.xnf.data(), tape.rf.data());
    tape.logits.resize(sz(n * c.vocabSize));
    linearForward(tape.xnf.data(), n, h, P(m_lmHead >= 0 ? m_lmHead : m_embedding), nullptr, c.vocabSize,
                  tape.logits.data());
}

void TrainModel::backward(Tape &tape, std::vector<float> &dlogits, const std::vector<std::vector<float>> *dBlockOut)
{
    const ModelConfig &c = m_config;
    const std::int64_t seqs = tape.seqs, t = tape.t, n = seqs * t, h = c.hiddenSize, inter = c.intermediateSize;
    const std::int64_t qDim = static_cast<std::int64_t>(c.numHeads) * c.headDim;
    const std::int64_t kvDim = static_cast<std::int64_t>(c.numKvHeads) * c.headDim;
    auto P = [&](int i) { return i < 0 ? nullptr : m_params[static_cast<std::size_t>(i)].forwardData(); };
    auto G = [&](int i) { return i < 0 ? nullptr : m_params[static_cast<std::size_t>(i)].grad.data(); };
    auto sz = [](std::int64_t k) { return static_cast<std::size_t>(k); };

    std::vector<float> dx(sz(n * h)), dxn(sz(n * h)), dtmp(sz(n * h));
    const int headIdx = m_lmHead >= 0 ? m_lmHead : m_embedding;
    linearBackward(tape.xnf.data(), n, h, P(headIdx), c.vocabSize, dlogits.data(), dxn.data(), G(headIdx), nullptr);
    rmsNormBackward(tape.xFinal.data(), P(m_finalNorm), tape.rf.data(), n, h, dxn.data(), dx.data(), G(m_finalNorm));

    std::vector<float> da(sz(n * inter)), dg(da.size()), du(da.size());
    std::vector<float> datt(sz(n * qDim)), dq(datt.size()), dk(sz(n * kvDim)), dv(dk.size());
    for (int l = static_cast<int>(m_blocks.size()) - 1; l >= 0; --l) {
        const TrainBlock &b = m_blocks[static_cast<std::size_t>(l)];
        Tape::Block &s = tape.blocks[static_cast<std::size_t>(l)];
        if (dBlockOut && static_cast<std::size_t>(l) < dBlockOut->size() && !(*dBlockOut)[static_cast<std::size_t>(l)].empty()) {
            const auto &extra = (*dBlockOut)[static_cast<std::size_t>(l)];
            for (std::size_t i = 0; i < dx.size(); ++i)
                dx[i] += extra[i];
        }
        // MLP: x_out = x_mid + down(silu(gate(xn2)) * up(xn2)), xn2 = norm(x_mid)
        linearBackward(s.a.data(), n, inter, P(b.down), h, dx.data(), da.data(), G(b.down), G(b.downBias));
        swigluBackward(s.g.data(), s.u.data(), n * inter, da.data(), dg.data(), du.data());
        linearBackward(s.xn2.data(), n, h, P(b.gate), inter, dg.data(), dxn.data(), G(b.gate), G(b.gateBias));
        linearBackward(s.xn2.data(), n, h, P(b.up), inter, du.data(), dtmp.data(), G(b.up), G(b.upBias));
        for (std::size_t i = 0; i < dxn.size(); ++i)
            dxn[i] += dtmp[i];
        rmsNormBackward(s.xMid.data(), P(b.mlpNorm), s.r2.data(), n, h, dxn.data(), dtmp.data(), G(b.mlpNorm));
        for (std::size_t i = 0; i < dx.size(); ++i)
            dx[i] += dtmp[i];
        // attention: x_mid = x_in + o(attn(rope(q(xn1)), rope(k(xn1)), v(xn1))), xn1 = norm(x_in)
        linearBackward(s.att.data(), n, qDim, P(b.o), h, dx.data(), datt.data(), G(b.o), G(b.oBias));
        attentionBackward(s.q.data(), s.k.data(), s.v.data(), s.probs.data(), seqs, t, c.numHeads, c.numKvHeads, c.headDim,
                          datt.data(), dq.data(), dk.data(), dv.data());
        ropeApply(dq.data(), seqs, t, c.numHeads, c.headDim, m_invFreq, true);
        ropeApply(dk.data(), seqs, t, c.numKvHeads, c.headDim, m_invFreq, true);
        linearBackward(s.xn1.data(), n, h, P(b.q), qDim, dq.data(), dxn.data(), G(b.q), G(b.qBias));
        linearBackward(s.xn1.data(), n, h, P(b.k), kvDim, dk.data(), dtmp.data(), G(b.k), G(b.kBias));
        for (std::size_t i = 0; i < dxn.size(); ++i)
            dxn[i] += dtmp[i];
        linearBackward(s.xn1.data(), n, h, P(b.v), kvDim, dv.data(), dtmp.data(), G(b.v), G(b.vBias));
        for (std::size_t i = 0; i < dxn.size(); ++i)
            dxn[i] += dtmp[i];
        rmsNormBackward(s.xIn.data(), P(b.attnNorm), s.r1.data(), n, h, dxn.data(), dtmp.data(), G(b.attnNorm));
        for (std::size_t i = 0; i < dx.size(); ++i)
            dx[i] += dtmp[i];
    }
    embeddingBackward(h, tape.ids.data(), n, dx.data(), G(m_embedding));
}

} // namespace bitsmith::core::train

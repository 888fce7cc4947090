// sensitivity.cpp: the cached per-layer sensitivity sweep (see sensitivity.h).
#include "core/sensitivity.h"

#include "core/calibration.h"    // InputStatistics, makeCalibrationSequences
#include "core/evaluate.h"       // logSoftmax
#include "core/linear.h"         // LinearKernel, makeDenseLinear
#include "core/prune/mask.h"      // magnitude / Wanda masks
#include "core/prune/sparsegpt.h" // sparseGptPrune
#include "core/quant/gptq.h"     // gptqQuantize
#include "core/quant/quantizer.h" // quantizeRtn
#include "core/random.h"         // splitmix64 (Hutchinson probes)
#include "core/recipe.h"         // linearLayers
#include "core/transformer.h"    // Transformer, LinearInputHook

#include <QRegularExpression>

#include <Eigen/Core>

#include <algorithm>
#include <chrono>
#include <map>
#include <cmath>
#include <cstring>
#include <limits>

namespace bitsmith::core {

namespace {

using Clock = std::chrono::steady_clock;

double secondsSince(Clock::time_point t0)
{
    return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Linears that read the same input share one set of statistics: q/k/v, o, gate/up, down.
constexpr int kInputGroups = 4;
int inputGroup(WeightRole role)
{
    switch (role) {
    case WeightRole::LinearQ:
    case WeightRole::LinearK:
    case WeightRole::LinearV:
        return 0;
    case WeightRole::LinearO:
        return 1;
    case WeightRole::LinearGate:
    case WeightRole::LinearUp:
        return 2;
    default:
        return 3;
    }
}

// Where an input's statistics are kept: [block * 4 + input group] for dense linears, then two per
// expert of MoE layers (gate/up, down).
std::size_t statsIndex(const ModelConfig &c, int block, int expert, WeightRole role)
{
    if (expert < 0)
        return static_cast<std::size_t>(block * kInputGroups + inputGroup(role));
    return static_cast<std::size_t>(c.numLayers * kInputGroups + (block * c.numExperts + expert) * 2
                                    + (role == WeightRole::LinearDown ? 1 : 0));
}
std::size_t statsCount(const ModelConfig &c)
{
    return static_cast<std::size_t>(c.numLayers * kInputGroups + c.numLayers * c.numExperts * 2);
}

class StatisticsHook final : public LinearInputHook
{
public:
    StatisticsHook(const ModelConfig &config, std::vector<std::unique_ptr<InputStatistics>> &stats, bool withHessian)
        : m_config(config), m_stats(stats), m_withHessian(withHessian)
    {}
    bool onLinearInput(int block, WeightRole role, const float *x, std::int64_t rows, std::int64_t cols) override
    {
        add(statsIndex(m_config, block, -1, role), x, rows, cols);
        return true;
    }
    bool onExpertInput(int block, int expert, WeightRole role, const float *x, std::int64_t rows, std::int64_t cols) override
    {
        add(statsIndex(m_config, block, expert, role), x, rows, cols);
        return true;
    }

private:
    void add(std::size_t index, const float *x, std::int64_t rows, std::int64_t cols)
    {
        auto &s = m_stats[index];
        if (!s)
            s = std::make_unique<InputStatistics>(cols, m_withHessian, 0);
        if (rows > 0)
            s->add(x, rows);
    }
    const ModelConfig &m_config;
    std::vector<std::unique_ptr<InputStatistics>> &m_stats;
    bool m_withHessian;
};

// Base pass: keeps the inputs of o_proj and down_proj of every block for window w.
class CachingHook final : public LinearInputHook
{
public:
    CachingHook(std::vector<std::vector<float>> &oInputs, std::vector<std::vector<float>> &downInputs)
        : m_o(oInputs), m_down(downInputs)
    {}
    std::size_t window = 0;
    bool onLinearInput(int block, WeightRole role, const float *x, std::int64_t rows, std::int64_t cols) override
    {
        auto *dst = role == WeightRole::LinearO ? &m_o : role == WeightRole::LinearDown ? &m_down : nullptr;
        if (dst) {
            const auto n = static_cast<std::size_t>(rows * cols);
            std::copy_n(x, n, (*dst)[static_cast<std::size_t>(block)].begin() + static_cast<std::ptrdiff_t>(window * n));
        }
        return true;
    }

private:
    std::vector<std::vector<float>> &m_o, &m_down;
};

// The naive script's calibration for one layer: statistics of its input only, stopping the
// forward there.
class OneInputHook final : public LinearInputHook
{
public:
    OneInputHook(int block, int expert, int group) : m_block(block), m_expert(expert), m_group(group) {}
    std::unique_ptr<InputStatistics> stats;
    bool onLinearInput(int block, WeightRole role, const float *x, std::int64_t rows, std::int64_t cols) override
    {
        if (m_expert >= 0 || block != m_block || inputGroup(role) != m_group)
            return true;
        return take(x, rows, cols);
    }
    bool onExpertInput(int block, int expert, WeightRole role, const float *x, std::int64_t rows, std::int64_t cols) override
    {
        if (block != m_block || expert != m_expert || inputGroup(role) != m_group)
            return true;
        return take(x, rows, cols);
    }

private:
    bool take(const float *x, std::int64_t rows, std::int64_t cols)
    {
        if (!stats)
            stats = std::make_unique<InputStatistics>(cols, true, 0);
        if (rows > 0)
            stats->add(x, rows);
        return false;
    }
    int m_block, m_expert, m_group;
};

// out[t, rows] += in[t, cols] · Δᵀ, Δ [rows, cols] row-major.
void addDeltaProduct(const float *in, std::int64_t t, const float *delta, std::int64_t rows, std::int64_t cols, float *out)
{
    using RowMajor = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
    Eigen::Map<const RowMajor> x(in, t, cols);
    Eigen::Map<const RowMajor> d(delta, rows, cols);
    Eigen::Map<RowMajor> y(out, t, rows);
    y.noalias() += x * d.transpose();
}

} // namespace

// A kernel over the original weights, prepacked once, plus an optional weight change ΔW (set
// while its layer is measured): y = x·Wᵀ (+ b) + x·ΔWᵀ. Unset, it computes exactly what the base
// pass did, so only the measured layer's change reaches the scores.
class DeltaLinear final : public LinearKernel
{
public:
    DeltaLinear(std::unique_ptr<LinearKernel> base, std::int64_t rows, std::int64_t cols)
        : m_base(std::move(base)), m_rows(rows), m_cols(cols)
    {}
    void setDelta(const float *delta) { m_delta = delta; }
    void forward(const float *x, std::int64_t m, float *y) const override
    {
        m_base->forward(x, m, y);
        if (m_delta)
            addDeltaProduct(x, m, m_delta, m_rows, m_cols, y);
    }
    std::int64_t inFeatures() const override { return m_cols; }
    std::int64_t outFeatures() const override { return m_rows; }
    QString description() const override { return m_base->description() + QStringLiteral(" + ΔW"); }

private:
    std::unique_ptr<LinearKernel> m_base;
    std::int64_t m_rows, m_cols;
    const float *m_delta = nullptr;
};

namespace {

// A layer's f32 values for one use: in place when stored as f32, else widened into `buf` (the
// model keeps nothing: a sweep over a large model must not leave every layer widened, and other
// readers of the shared model may hold its own f32 views).
MatrixView layerValues(const Model &m, const QString &tensor, std::vector<float> &buf)
{
    const MatrixView v = m.weight(tensor);
    if (!v.slot || v.slot->f32InPlace())
        return v;
    buf.resize(static_cast<std::size_t>(v.rows * v.cols));
    v.rowsToF32(0, v.rows, buf.data());
    return MatrixView{buf.data(), v.rows, v.cols, nullptr};
}

Error cancelled()
{
    return fail(ErrorCode::Cancelled, QStringLiteral("sensitivity analysis cancelled"));
}

} // namespace

QString SensitivitySetting::label() const
{
    QStringList parts;
    if (sparsity > 0 && !pattern.isNM())
        parts << QStringLiteral("s%1").arg(qRound(sparsity * 100.0));
    if (pattern.isNM())
        parts << pattern.name();
    if (format.bits > 0) {
        QString w = QStringLiteral("w%1").arg(format.bits);
        if (format.groupSize > 0)
            w += QStringLiteral("g%1").arg(format.groupSize);
        else if (format.groupSize == -1)
            w += QStringLiteral("t");
        parts << w;
    }
    return technique + QLatin1Char(':') + parts.join(QLatin1Char('+'));
}

RecipeEntry recipeEntryFor(const QString &name, const SensitivitySetting &setting)
{
    RecipeEntry e;
    e.name = name;
    e.technique = setting.technique;
    if (setting.quantizes()) {
        e.bits = setting.format.bits;
        e.groupSize = setting.format.groupSize;
        e.symmetric = setting.format.symmetric;
    }
    if (setting.prunes()) {
        if (setting.pattern.isNM())
            e.pattern = setting.pattern;
        else
            e.sparsity = setting.sparsity;
        if (setting.technique == QLatin1String("sparsegpt"))
            e.parameters.insert(QStringLiteral("quantize"), setting.quantizes());
    }
    return e;
}

bool needsCalibration(const SensitivitySetting &setting)
{
    return setting.technique == QLatin1String("gptq") || setting.technique == QLatin1String("wanda")
           || setting.technique == QLatin1String("sparsegpt");
}

Expected<std::vector<SensitivitySetting>> parseSensitivitySettings(const QString &spec)
{
    static const QRegularExpression head(QStringLiteral("^([a-z0-9_-]+):(.+)$"));
    static const QRegularExpression bitsPart(QStringLiteral("^w([0-9]+)(?:g([0-9]+))?$"));
    static const QRegularExpression sparsityPart(QStringLiteral("^s([0-9]+)$"));
    static const QRegularExpression nmPart(QStringLiteral("^([0-9]+):([0-9]+)$"));
    std::vector<SensitivitySetting> out;
    for (const QString &raw : spec.split(QLatin1Char(','), Qt::SkipEmptyParts)) {
        const QString s = raw.trimmed().toLower();
        auto bad = [&](const QString &why) {
            return unexpected(fail(ErrorCode::InvalidArgument, QStringLiteral("bad candidate '%1': %2").arg(raw.trimmed(), why))
                                  .forParameter(QStringLiteral("candidates"))
                                  .withHint(QStringLiteral("use METHOD:wBITS[gGROUP] for rtn/gptq (rtn:w3g64, gptq:w4), METHOD:sPERCENT "
                                                           "or METHOD:N:M for magnitude/wanda/sparsegpt (wanda:s50, magnitude:2:4), "
                                                           "sparsegpt:2:4+w4g128 for both")));
        };
        const auto m = head.match(s);
        if (!m.hasMatch())
            return bad(QStringLiteral("not METHOD:SETTING"));
        SensitivitySetting setting;
        setting.technique = m.captured(1);
        setting.format.bits = 0;
        setting.format.groupSize = 0;
        setting.format.symmetric = false;
        bool hasBits = false, hasSparsity = false;
        // N:M contains a colon: split the rest on '+' only.
        for (const QString &part : m.captured(2).split(QLatin1Char('+'))) {
            if (const auto b = bitsPart.match(part); b.hasMatch() && !hasBits) {
                hasBits = true;
                setting.format.bits = b.captured(1).toInt();
                setting.format.groupSize = b.captured(2).isEmpty() ? 0 : b.captured(2).toInt();
                if (setting.format.bits < 2 || setting.format.bits > 8)
                    return bad(QStringLiteral("bits must be 2..8"));
                if (!b.captured(2).isEmpty() && setting.format.groupSize < 1)
                    return bad(QStringLiteral("group size must be positive"));
            } else if (const auto sp = sparsityPart.match(part); sp.hasMatch() && !hasSparsity) {
                hasSparsity = true;
                const int pct = sp.captured(1).toInt();
                if (pct < 1 || pct > 99)
                    return bad(QStringLiteral("sparsity must be 1..99 percent"));
                setting.sparsity = pct / 100.0;
            } else if (const auto nm = nmPart.match(part); nm.hasMatch() && !hasSparsity) {
                hasSparsity = true;
                const auto p = SparsityPattern::parse(part);
                if (!p || !p->isNM())
                    return bad(QStringLiteral("N:M needs 0 < N < M <= 64"));
                setting.pattern = *p;
                setting.sparsity = 1.0 - static_cast<double>(p->n) / p->m;
            } else {
                return bad(QStringLiteral("'%1' is not wBITS[gGROUP], sPERCENT or N:M (or is given twice)").arg(part));
            }
        }
        const QString &t = setting.technique;
        if (t == QLatin1String("rtn") || t == QLatin1String("gptq")) {
            if (!hasBits || hasSparsity)
                return bad(QStringLiteral("%1 takes wBITS[gGROUP] only").arg(t));
        } else if (t == QLatin1String("magnitude") || t == QLatin1String("wanda")) {
            if (!hasSparsity || hasBits)
                return bad(QStringLiteral("%1 takes a sparsity (sPERCENT) or N:M only").arg(t));
        } else if (t == QLatin1String("sparsegpt")) {
            if (!hasSparsity)
                return bad(QStringLiteral("sparsegpt needs a sparsity (sPERCENT) or N:M"));
        } else {
            return bad(QStringLiteral("method must be rtn, gptq, magnitude, wanda or sparsegpt"));
        }
        for (const SensitivitySetting &o : out)
            if (o.label() == setting.label())
                return bad(QStringLiteral("listed twice"));
        out.push_back(setting);
    }
    if (out.empty())
        return unexpected(fail(ErrorCode::InvalidArgument, QStringLiteral("no candidate settings given"))
                              .forParameter(QStringLiteral("candidates")));
    return out;
}

namespace {

std::vector<double> ranks(const std::vector<double> &v)
{
    std::vector<std::size_t> order(v.size());
    for (std::size_t i = 0; i < order.size(); ++i)
        order[i] = i;
    std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return v[a] < v[b]; });
    std::vector<double> r(v.size());
    for (std::size_t i = 0; i < order.size();) {
        std::size_t j = i;
        while (j + 1 < order.size() && v[order[j + 1]] == v[order[i]])
            ++j;
        const double avg = 0.5 * static_cast<double>(i + j) + 1.0;
        for (std::size_t k = i; k <= j; ++k)
            r[order[k]] = avg;
        i = j + 1;
    }
    return r;
}

} // namespace

double spearmanCorrelation(const std::vector<double> &a, const std::vector<double> &b)
{
    std::vector<double> x, y;
    for (std::size_t i = 0; i < std::min(a.size(), b.size()); ++i)
        if (!std::isnan(a[i]) && !std::isnan(b[i])) {
            x.push_back(a[i]);
            y.push_back(b[i]);
        }
    const double nan = std::numeric_limits<double>::quiet_NaN();
    if (x.size() < 3)
        return nan;
    const std::vector<double> rx = ranks(x), ry = ranks(y);
    const double n = static_cast<double>(rx.size());
    double mx = 0, my = 0;
    for (std::size_t i = 0; i < rx.size(); ++i) {
        mx += rx[i];
        my += ry[i];
    }
    mx /= n;
    my /= n;
    double sxy = 0, sxx = 0, syy = 0;
    for (std::size_t i = 0; i < rx.size(); ++i) {
        sxy += (rx[i] - mx) * (ry[i] - my);
        sxx += (rx[i] - mx) * (rx[i] - mx);
        syy += (ry[i] - my) * (ry[i] - my);
    }
    if (sxx <= 0 || syy <= 0)
        return nan;
    return sxy / std::sqrt(sxx * syy);
}

std::vector<ProxyCorrelation> proxyCorrelations(const SensitivityResult &r)
{
    const std::pair<const char *, const std::vector<double> *> proxies[] = {
        {"relative_error", &r.relativeError},
        {"hessian_error", &r.hessianError},
        {"activation_error", &r.activationError},
        {"hutchinson_error", &r.hutchinsonError},
    };
    std::vector<ProxyCorrelation> out;
    for (const auto &[name, values] : proxies)
        out.push_back({QString::fromLatin1(name), spearmanCorrelation(*values, r.deltaLoss), spearmanCorrelation(*values, r.kl)});
    return out;
}

SensitivityAnalysis::~SensitivityAnalysis() = default;

const QString &SensitivityAnalysis::layerName(int layer) const
{
    return m_layers[static_cast<std::size_t>(layer)].name;
}

Expected<std::unique_ptr<SensitivityAnalysis>> SensitivityAnalysis::create(std::shared_ptr<const Model> model,
                                                                           std::span<const std::int32_t> evalTokens,
                                                                           std::span<const std::int32_t> calibTokens,
                                                                           const SensitivityOptions &options,
                                                                           Feedback *feedback)
{
    const auto t0 = Clock::now();
    const ModelConfig &config = model->config();
    if (options.ctx < 2 || options.ctx > config.maxPositions)
        return unexpected(fail(ErrorCode::InvalidArgument, QStringLiteral("ctx must be in 2..%1, got %2")
                                                               .arg(config.maxPositions).arg(options.ctx))
                              .forParameter(QStringLiteral("ctx")));
    if (options.windows < 1)
        return unexpected(fail(ErrorCode::InvalidArgument, QStringLiteral("windows must be at least 1"))
                              .forParameter(QStringLiteral("windows")));
    if (options.hutchinsonProbes < 0)
        return unexpected(fail(ErrorCode::InvalidArgument, QStringLiteral("Hutchinson probes must be >= 0"))
                              .forParameter(QStringLiteral("hutchinson-probes")));
    const std::int64_t available = static_cast<std::int64_t>(evalTokens.size()) / options.ctx;
    if (available < options.windows)
        return unexpected(fail(ErrorCode::InvalidArgument,
                               QStringLiteral("the evaluation text has %1 tokens: %2 windows of %3 need %4")
                                   .arg(evalTokens.size()).arg(options.windows).arg(options.ctx)
                                   .arg(static_cast<std::int64_t>(options.windows) * options.ctx))
                              .forParameter(QStringLiteral("windows"))
                              .withHint(QStringLiteral("use fewer windows, a shorter ctx or a longer text")));

    std::unique_ptr<SensitivityAnalysis> a(new SensitivityAnalysis);
    a->m_original = model;
    a->m_options = options;
    // Every linear runs on oneDNN over the original weights, wrapped to take a weight change.
    std::vector<BlockKernels> kernels;
    std::map<std::tuple<int, WeightRole, int>, DeltaLinear *> byRole; // block, role, expert
    for (int b = 0; b < model->config().numLayers; ++b) {
        const BlockWeights &bw = model->blocks()[static_cast<std::size_t>(b)];
        BlockKernels k;
        auto wrap = [&](WeightRole role, const MatrixView &w, const MatrixView &bias, int expert = -1) {
            auto d = std::make_unique<DeltaLinear>(makeDenseLinear(w, bias, LinearBackend::OneDnn), w.rows, w.cols);
            byRole[{b, role, expert}] = d.get();
            return d;
        };
        k.q = wrap(WeightRole::LinearQ, bw.q, bw.qBias);
        k.k = wrap(WeightRole::LinearK, bw.k, bw.kBias);
        k.v = wrap(WeightRole::LinearV, bw.v, bw.vBias);
        k.o = wrap(WeightRole::LinearO, bw.o, bw.oBias);
        if (bw.experts.empty()) {
            k.gate = wrap(WeightRole::LinearGate, bw.gate, bw.gateBias);
            k.up = wrap(WeightRole::LinearUp, bw.up, bw.upBias);
            k.down = wrap(WeightRole::LinearDown, bw.down, bw.downBias);
        } else {
            k.router = makeDenseLinear(bw.router, {}, LinearBackend::Eigen);
            for (int e = 0; e < static_cast<int>(bw.experts.size()); ++e) {
                const ExpertWeights &ew = bw.experts[static_cast<std::size_t>(e)];
                ExpertKernels ek;
                ek.gate = wrap(WeightRole::LinearGate, ew.gate, {}, e);
                ek.up = wrap(WeightRole::LinearUp, ew.up, {}, e);
                ek.down = wrap(WeightRole::LinearDown, ew.down, {}, e);
                k.experts.push_back(std::move(ek));
            }
        }
        kernels.push_back(std::move(k));
    }
    a->m_fast = std::make_unique<Transformer>(model, std::move(kernels),
                                              makeDenseLinear(model->lmHead(), {}, LinearBackend::OneDnn));
    for (const ResolvedLayer &l : linearLayers(*model)) {
        if (l.role == WeightRole::LmHead || l.block < 0)
            continue;
        const auto it = byRole.find({l.block, l.role, l.expert});
        if (it == byRole.end())
            continue;
        a->m_layers.push_back({l.name, l.tensor, l.role, l.block, l.expert, l.rows, l.cols, it->second});
    }
    for (int w = 0; w < options.windows; ++w)
        a->m_windows.emplace_back(evalTokens.begin() + static_cast<std::ptrdiff_t>(w) * options.ctx,
                                  evalTokens.begin() + static_cast<std::ptrdiff_t>(w + 1) * options.ctx);

    // Original pass over the evaluation windows: the cached states, logits and probabilities.
    const Transformer &tf = *a->m_fast;
    const int blocks = config.numLayers;
    const std::int64_t hidden = config.hiddenSize;
    const std::int64_t vocab = tf.vocabSize();
    const std::int64_t ctx = options.ctx;
    const std::size_t W = a->m_windows.size();
    const std::size_t windowFloats = static_cast<std::size_t>(ctx * hidden);
    const auto B = static_cast<std::size_t>(blocks);
    a->m_blockInputs.assign(B, std::vector<float>(windowFloats * W));
    a->m_mids.assign(B, std::vector<float>(windowFloats * W));
    a->m_oInputs.assign(B, std::vector<float>(static_cast<std::size_t>(ctx * config.numHeads * config.headDim) * W));
    a->m_downInputs.assign(B, std::vector<float>(static_cast<std::size_t>(ctx * config.intermediateSize) * W));
    a->m_finalHidden.resize(windowFloats * W);
    const std::size_t positions = W * static_cast<std::size_t>(ctx - 1);
    a->m_baseLogits.resize(positions * static_cast<std::size_t>(vocab));
    a->m_baseProbs.resize(a->m_baseLogits.size());
    a->m_baseLse.resize(positions);
    a->m_baseProbSum.resize(positions);
    KVCache cache = tf.makeCache(options.ctx);
    CachingHook hook(a->m_oInputs, a->m_downInputs);
    std::vector<float> x(windowFloats), logits;
    std::vector<double> lp;
    double nll = 0;
    for (std::size_t w = 0; w < W; ++w) {
        if (feedback && feedback->isCancelled())
            return unexpected(cancelled());
        cache.clear();
        hook.window = w;
        tf.embed(a->m_windows[w], x.data());
        const auto at = static_cast<std::ptrdiff_t>(w * windowFloats);
        for (std::size_t b = 0; b < B; ++b) {
            std::copy(x.begin(), x.end(), a->m_blockInputs[b].begin() + at);
            tf.runAttention(static_cast<int>(b), x.data(), ctx, cache, &hook);
            std::copy(x.begin(), x.end(), a->m_mids[b].begin() + at);
            tf.runMlp(static_cast<int>(b), x.data(), ctx, &hook);
        }
        std::copy(x.begin(), x.end(), a->m_finalHidden.begin() + at);
        tf.head(x.data(), ctx, logits);
        for (std::int64_t i = 0; i + 1 < ctx; ++i) {
            logSoftmax(logits.data() + i * vocab, vocab, lp);
            nll -= lp[static_cast<std::size_t>(a->m_windows[w][static_cast<std::size_t>(i + 1)])];
            const std::size_t pos = w * static_cast<std::size_t>(ctx - 1) + static_cast<std::size_t>(i);
            const std::size_t off = pos * static_cast<std::size_t>(vocab);
            const float *z = logits.data() + i * vocab;
            float sum = 0;
            for (std::int64_t v = 0; v < vocab; ++v) {
                a->m_baseLogits[off + static_cast<std::size_t>(v)] = z[v];
                a->m_baseProbs[off + static_cast<std::size_t>(v)] = static_cast<float>(std::exp(lp[static_cast<std::size_t>(v)]));
            }
            // Σ p in the same f32 summation as score() uses, so an unchanged model scores 0.
            sum = Eigen::Map<const Eigen::ArrayXf>(a->m_baseProbs.data() + off, vocab).sum();
            a->m_baseProbSum[pos] = sum;
            a->m_baseLse[pos] = static_cast<double>(z[0]) - lp[0];
        }
    }
    a->m_baseLoss = nll / static_cast<double>(positions);

    // Calibration statistics of the original model.
    a->m_stats.resize(statsCount(config));
    if (calibTokens.size() >= 2) {
        auto seqs = makeCalibrationSequences(calibTokens, options.calibSequences,
                                             std::min(options.calibLength, config.maxPositions), options.seed);
        if (!seqs)
            return unexpected(seqs.error());
        // Full Hessians of every input (two double matrices each) when they take at most 1 GiB.
        std::int64_t hessianBytes = 0;
        for (const ResolvedLayer &l : linearLayers(*model))
            if (l.role == WeightRole::LinearQ || l.role == WeightRole::LinearO || l.role == WeightRole::LinearGate
                || l.role == WeightRole::LinearDown)
                hessianBytes += 2 * l.cols * l.cols * 8;
        bool budgetSet = false;
        const qint64 budget = qEnvironmentVariableIntValue("BITSMITH_HESSIAN_BUDGET_BYTES", &budgetSet); // tests
        a->m_lazyHessians = hessianBytes > (budgetSet ? budget : (std::int64_t(1) << 30));
        StatisticsHook statsHook(config, a->m_stats, !a->m_lazyHessians);
        a->m_calibSequences = *seqs;
        for (const auto &seq : *seqs) {
            if (feedback && feedback->isCancelled())
                return unexpected(cancelled());
            KVCache c = tf.makeCache(static_cast<int>(seq.size()));
            std::vector<float> out;
            if (auto ok = tf.forward(seq, c, out, true, &statsHook); !ok)
                return unexpected(ok.error());
        }
    }
    a->m_setupSeconds = secondsSince(t0);
    return a;
}

Expected<std::shared_ptr<const InputStatistics>> SensitivityAnalysis::hessianStats(int block, int expert, WeightRole role) const
{
    const auto index = statsIndex(m_original->config(), block, expert, role);
    const InputStatistics *kept = m_stats[index].get();
    if (!kept)
        return std::shared_ptr<const InputStatistics>();
    if (!m_lazyHessians)
        return std::shared_ptr<const InputStatistics>(std::shared_ptr<const InputStatistics>(), kept); // not owning
    std::lock_guard lock(m_lazyMutex);
    if (m_lazyIndex == static_cast<int>(index) && m_lazyStats)
        return std::shared_ptr<const InputStatistics>(m_lazyStats);
    m_lazyStats.reset(); // one input's Hessian at a time
    OneInputHook hook(block, expert, inputGroup(role));
    for (const auto &seq : m_calibSequences) {
        KVCache c = m_fast->makeCache(static_cast<int>(seq.size()));
        std::vector<float> out;
        if (auto ok = m_fast->forward(seq, c, out, true, &hook); !ok)
            return unexpected(ok.error());
    }
    if (!hook.stats)
        return std::shared_ptr<const InputStatistics>();
    m_lazyStats = std::move(hook.stats);
    m_lazyIndex = static_cast<int>(index);
    return std::shared_ptr<const InputStatistics>(m_lazyStats);
}

Expected<QuantizedTensor> SensitivityAnalysis::quantize(int layer, const SensitivitySetting &setting) const
{
    const Layer &l = m_layers[static_cast<std::size_t>(layer)];
    std::vector<float> buf;
    const MatrixView w = layerValues(*m_original, l.tensor, buf);
    if (setting.technique == QLatin1String("rtn"))
        return quantizeRtn(w, setting.format);
    if (setting.technique == QLatin1String("gptq")) {
        auto s = hessianStats(l.block, l.expert, l.role);
        if (!s)
            return unexpected(s.error());
        if (!*s)
            return unexpected(fail(ErrorCode::InvalidArgument, QStringLiteral("GPTQ needs calibration text"))
                                  .forParameter(QStringLiteral("calib")).forLayer(l.name));
        auto r = gptqQuantize(w, (*s)->hessian(), setting.format);
        if (!r)
            return unexpected(std::move(r.error()).forLayer(l.name));
        return std::move(r->q);
    }
    return unexpected(fail(ErrorCode::Unsupported, QStringLiteral("unknown technique '%1'").arg(setting.technique))
                          .forParameter(QStringLiteral("candidates")));
}

Expected<SensitivityAnalysis::Compressed> SensitivityAnalysis::compress(int layer, const SensitivitySetting &setting) const
{
    const Layer &l = m_layers[static_cast<std::size_t>(layer)];
    std::vector<float> buf;
    const MatrixView w = layerValues(*m_original, l.tensor, buf);
    const auto n = static_cast<std::size_t>(l.rows * l.cols);
    Compressed out;
    if (!setting.prunes()) {
        auto q = quantize(layer, setting);
        if (!q)
            return unexpected(q.error());
        out.weights.resize(n);
        q->dequantize(out.weights.data());
        out.bytes = static_cast<double>(q->storageBits()) / 8.0;
        return out;
    }
    auto statsOr = hessianStats(l.block, l.expert, l.role);
    if (!statsOr)
        return unexpected(statsOr.error());
    const std::shared_ptr<const InputStatistics> stats = *statsOr;
    auto needStats = [&]() -> Expected<void> {
        if (!stats)
            return unexpected(fail(ErrorCode::InvalidArgument, QStringLiteral("%1 needs calibration text").arg(setting.technique))
                                  .forParameter(QStringLiteral("calib")).forLayer(l.name));
        return {};
    };
    std::optional<QuantizedTensor> q;
    if (setting.technique == QLatin1String("sparsegpt")) {
        if (auto ok = needStats(); !ok)
            return unexpected(ok.error());
        SparseGptOptions o;
        if (setting.quantizes())
            o.quantize = setting.format;
        auto r = sparseGptPrune(w, stats->hessian(), setting.sparsity, setting.pattern, o);
        if (!r)
            return unexpected(std::move(r.error()).forLayer(l.name));
        out.weights = std::move(r->weights);
        q = std::move(r->q);
    } else {
        std::vector<float> scores;
        if (setting.technique == QLatin1String("wanda")) {
            if (auto ok = needStats(); !ok)
                return unexpected(ok.error());
            scores = wandaScores(w, stats->meanSquare(), stats->tokens());
        } else {
            scores = magnitudeScores(w);
        }
        auto mask = selectMask(scores, l.rows, l.cols, setting.sparsity, setting.pattern, MaskScope::Row);
        if (!mask)
            return unexpected(std::move(mask.error()).forLayer(l.name));
        out.weights = applyMask(w, *mask);
    }
    // Storage: kept values (the checkpoint's dtype, or the quantized codes with their scales) plus
    // their positions.
    // N:M keeps exactly N of every M slots (a kept weight may quantize to 0 and still be stored).
    std::size_t kept = 0;
    if (setting.pattern.isNM())
        kept = n / static_cast<std::size_t>(setting.pattern.m) * static_cast<std::size_t>(setting.pattern.n);
    else
        for (float v : out.weights)
            kept += v != 0.0f;
    double valueBits = 0;
    if (q) {
        const double codes = static_cast<double>(n) * q->format.bits;
        valueBits = static_cast<double>(q->storageBits()) - codes + static_cast<double>(kept) * q->format.bits;
    } else {
        double dtypeBits = 32;
        for (const WeightInfo &wi : m_original->weights())
            if (wi.name == l.tensor && wi.parameters > 0)
                dtypeBits = 8.0 * static_cast<double>(wi.storedBytes) / static_cast<double>(wi.parameters);
        valueBits = static_cast<double>(kept) * dtypeBits;
    }
    double positionBits = static_cast<double>(n); // bitmap
    if (setting.pattern.isNM())
        positionBits = std::min(positionBits, static_cast<double>(kept) * std::ceil(std::log2(setting.pattern.m)));
    out.bytes = (valueBits + positionBits) / 8.0;
    return out;
}

Expected<LayerMeasurement> SensitivityAnalysis::measureCached(int layer, const float *weights)
{
    return measure(layer, weights, false);
}

Expected<LayerMeasurement> SensitivityAnalysis::measureNaive(int layer, const float *weights)
{
    return measure(layer, weights, true);
}

void SensitivityAnalysis::score(std::size_t w, const std::vector<float> &logits, double &dnll, double &kl,
                                std::vector<float> &tmp) const
{
    const std::int64_t vocab = m_fast->vocabSize();
    const std::int64_t ctx = m_options.ctx;
    tmp.resize(static_cast<std::size_t>(vocab));
    Eigen::Map<Eigen::ArrayXf> d(tmp.data(), vocab);
    std::vector<double> lp;
    for (std::int64_t i = 0; i + 1 < ctx; ++i) {
        const std::size_t pos = w * static_cast<std::size_t>(ctx - 1) + static_cast<std::size_t>(i);
        const std::size_t off = pos * static_cast<std::size_t>(vocab);
        const auto target = static_cast<std::size_t>(m_windows[w][static_cast<std::size_t>(i + 1)]);
        Eigen::Map<const Eigen::ArrayXf> z1(logits.data() + i * vocab, vocab);
        Eigen::Map<const Eigen::ArrayXf> z0(m_baseLogits.data() + off, vocab);
        Eigen::Map<const Eigen::ArrayXf> p(m_baseProbs.data() + off, vocab);
        d = z1 - z0;
        const float s2 = (p * d).sum();
        const float s1 = (p * d.exp()).sum();
        if (std::isfinite(s1) && s1 > 0) {
            const double norm = m_baseProbSum[pos];
            const double logRatio = std::log(static_cast<double>(s1) / norm);
            kl += logRatio - static_cast<double>(s2) / norm;
            dnll += logRatio - static_cast<double>(tmp[target]);
        } else {
            // A logit moved by more than f32's exp range: the plain double computation.
            logSoftmax(logits.data() + i * vocab, vocab, lp);
            double k = 0;
            for (std::int64_t v = 0; v < vocab; ++v) {
                const double logP = static_cast<double>(z0[v]) - m_baseLse[pos];
                k += static_cast<double>(p[v]) * (logP - lp[static_cast<std::size_t>(v)]);
            }
            kl += k;
            dnll += -lp[target] - (m_baseLse[pos] - static_cast<double>(z0[static_cast<std::int64_t>(target)]));
        }
    }
}

Expected<LayerMeasurement> SensitivityAnalysis::measure(int layer, const float *weights, bool naive)
{
    if (layer < 0 || layer >= layerCount())
        return unexpected(fail(ErrorCode::InvalidArgument, QStringLiteral("layer index %1 out of range").arg(layer))
                              .forParameter(QStringLiteral("layer")));
    const Layer &l = m_layers[static_cast<std::size_t>(layer)];
    std::vector<float> originalBuf;
    const float *original = layerValues(*m_original, l.tensor, originalBuf).data();
    const std::size_t n = static_cast<std::size_t>(l.rows * l.cols);
    std::vector<float> delta(n);
    for (std::size_t i = 0; i < n; ++i)
        delta[i] = weights[i] - original[i];
    // The layer's kernel adds ΔW·x while it is measured, and forgets it whatever happens below.
    struct Unset
    {
        DeltaLinear *k;
        ~Unset() { k->setDelta(nullptr); }
    } unset{l.kernel};

    const Transformer &fast = *m_fast;
    const int blocks = m_original->config().numLayers;
    const std::int64_t hidden = m_original->config().hiddenSize;
    const std::int64_t ctx = m_options.ctx;
    const std::size_t windowFloats = static_cast<std::size_t>(ctx * hidden);
    const auto b = static_cast<std::size_t>(l.block);
    KVCache cache = fast.makeCache(m_options.ctx);
    std::vector<float> x(windowFloats), logits, tmp;
    double dnll = 0, kl = 0;
    for (std::size_t w = 0; w < m_windows.size(); ++w) {
        cache.clear();
        if (naive) {
            // The naive way: a full forward from the tokens (the same kernels).
            l.kernel->setDelta(delta.data());
            fast.embed(m_windows[w], x.data());
            for (int bb = 0; bb < blocks; ++bb)
                fast.runBlock(bb, x.data(), ctx, cache);
        } else {
            const auto at = static_cast<std::ptrdiff_t>(w * windowFloats);
            // Gemma's sandwich norms normalize o's and down's outputs before the residual add, so
            // their ΔW does not add linearly: restart the block (o) or its MLP half (down) instead.
            // An expert's change reaches the output through the routing weights of its tokens:
            // its MLP half is rerun (gate/up and down alike).
            const bool sandwich = m_original->config().sandwichNorms;
            const WeightRole role = l.expert >= 0                       ? WeightRole::LinearGate
                                  : !sandwich                           ? l.role
                                  : l.role == WeightRole::LinearO    ? WeightRole::LinearQ
                                  : l.role == WeightRole::LinearDown ? WeightRole::LinearGate
                                                                     : l.role;
            switch (role) {
            case WeightRole::LinearQ:
            case WeightRole::LinearK:
            case WeightRole::LinearV:
                l.kernel->setDelta(delta.data());
                std::copy_n(m_blockInputs[b].begin() + at, windowFloats, x.begin());
                fast.runBlock(l.block, x.data(), ctx, cache);
                break;
            case WeightRole::LinearO: { // mid-state + ΔW·att, then the MLP half
                std::copy_n(m_mids[b].begin() + at, windowFloats, x.begin());
                const std::size_t in = static_cast<std::size_t>(ctx * l.cols);
                addDeltaProduct(m_oInputs[b].data() + w * in, ctx, delta.data(), l.rows, l.cols, x.data());
                fast.runMlp(l.block, x.data(), ctx);
                break;
            }
            case WeightRole::LinearGate:
            case WeightRole::LinearUp:
                l.kernel->setDelta(delta.data());
                std::copy_n(m_mids[b].begin() + at, windowFloats, x.begin());
                fast.runMlp(l.block, x.data(), ctx);
                break;
            default: { // down_proj: block b's output + ΔW·act (the residual is additive)
                const auto &out = b + 1 < m_blockInputs.size() ? m_blockInputs[b + 1] : m_finalHidden;
                std::copy_n(out.begin() + at, windowFloats, x.begin());
                const std::size_t in = static_cast<std::size_t>(ctx * l.cols);
                addDeltaProduct(m_downInputs[b].data() + w * in, ctx, delta.data(), l.rows, l.cols, x.data());
                break;
            }
            }
            l.kernel->setDelta(nullptr);
            for (int bb = l.block + 1; bb < blocks; ++bb)
                fast.runBlock(bb, x.data(), ctx, cache);
        }
        fast.head(x.data(), ctx, logits);
        score(w, logits, dnll, kl, tmp);
    }
    const double positions = static_cast<double>(m_windows.size() * static_cast<std::size_t>(ctx - 1));
    LayerMeasurement m;
    m.deltaLoss = dnll / positions;
    m.meanNll = m_baseLoss + m.deltaLoss;
    m.kl = kl / positions;
    m.perplexity = std::exp(m.meanNll);
    return m;
}

Expected<double> SensitivityAnalysis::hessianTrace(int layer, int probes, double relativeStep)
{
    if (layer < 0 || layer >= layerCount())
        return unexpected(fail(ErrorCode::InvalidArgument, QStringLiteral("layer index %1 out of range").arg(layer))
                              .forParameter(QStringLiteral("layer")));
    const Layer &l = m_layers[static_cast<std::size_t>(layer)];
    std::vector<float> buf;
    const MatrixView w = layerValues(*m_original, l.tensor, buf);
    const std::size_t n = static_cast<std::size_t>(l.rows * l.cols);
    double norm = 0;
    for (std::size_t i = 0; i < n; ++i)
        norm += static_cast<double>(w.data()[i]) * w.data()[i];
    // ε·‖v‖ = relativeStep·‖W‖ (‖v‖ = √n for a Rademacher vector): large enough that the
    // second-order change dominates f32 rounding, small enough that higher-order terms stay
    // negligible.
    const double eps = relativeStep * std::sqrt(norm / static_cast<double>(n));
    if (!(eps > 0))
        return 0.0;
    std::uint64_t state = m_options.seed * 0x9E3779B97F4A7C15ull + static_cast<std::uint64_t>(layer) + 1;
    std::vector<float> plus(n), minus(n);
    double sum = 0;
    for (int p = 0; p < probes; ++p) {
        for (std::size_t i = 0; i < n; i += 64) {
            std::uint64_t bits = splitmix64(state);
            for (std::size_t j = i; j < std::min(n, i + 64); ++j, bits >>= 1) {
                const double v = (bits & 1u) ? eps : -eps;
                plus[j] = static_cast<float>(w.data()[j] + v);
                minus[j] = static_cast<float>(w.data()[j] - v);
            }
        }
        auto up = measureCached(layer, plus.data());
        if (!up)
            return unexpected(up.error());
        auto down = measureCached(layer, minus.data());
        if (!down)
            return unexpected(down.error());
        // L(W) is the base loss (ΔL = 0, to ~1e-9): the kernels are the base pass's.
        sum += (up->deltaLoss + down->deltaLoss) / (eps * eps);
    }
    return sum / probes;
}

Expected<SensitivityResult> SensitivityAnalysis::run(const std::vector<SensitivitySetting> &settings, Feedback *feedback)
{
    const auto t0 = Clock::now();
    SensitivityResult r;
    r.settings = settings;
    r.ctx = m_options.ctx;
    r.windows = static_cast<int>(m_windows.size());
    r.calibSequences = m_options.calibSequences;
    r.calibLength = m_options.calibLength;
    r.seed = m_options.seed;
    r.modelHash = m_original->weightsHash();
    r.baseLoss = m_baseLoss;
    r.basePerplexity = std::exp(m_baseLoss);
    r.hutchinsonProbes = m_options.hutchinsonProbes;
    const std::size_t cells = m_layers.size() * settings.size();
    const double nan = std::numeric_limits<double>::quiet_NaN();
    for (auto *m : {&r.bytes, &r.deltaLoss, &r.kl, &r.perplexity, &r.relativeError, &r.hessianError, &r.activationError,
                    &r.hutchinsonError})
        m->assign(cells, nan);
    r.hutchinsonTrace.assign(m_layers.size(), nan);
    std::vector<double> quantizeSecondsPerCell(cells, 0.0);
    std::vector<double> sumSquaredError(cells, 0.0);
    const int probes = m_options.hutchinsonProbes;
    // Work units for progress: one per cell, two per Hutchinson probe.
    const double units = static_cast<double>(cells + m_layers.size() * static_cast<std::size_t>(2 * probes));
    double done = 0;
    // The naive full forward is timed on a few layers spread over the depth, right after their
    // cached measurement (the same conditions on a busy machine), and extrapolated to all cells.
    std::vector<bool> naiveSample(m_layers.size(), false);
    const int samples = std::min<int>(m_options.naiveSamples, layerCount());
    for (int i = 0; i < samples; ++i)
        naiveSample[static_cast<std::size_t>(samples > 1 ? i * (layerCount() - 1) / (samples - 1) : 0)] = true;
    double naiveForwardSeconds = 0;
    int naiveForwardCount = 0;
    std::vector<float> deq;
    for (std::size_t li = 0; li < m_layers.size(); ++li) {
        const Layer &l = m_layers[li];
        r.layers.push_back(l.name);
        r.parameters.push_back(l.rows * l.cols);
        std::vector<float> wBuf;
        const MatrixView w = layerValues(*m_original, l.tensor, wBuf);
        const auto &stats = m_stats[statsIndex(m_original->config(), l.block, l.expert, l.role)];
        Eigen::VectorXd diagH;
        if (stats) // H = (2/n) Σ x xᵀ: its diagonal is twice the mean square
            diagH = m_lazyHessians ? Eigen::VectorXd(2.0 * Eigen::Map<const Eigen::VectorXd>(stats->meanSquare().data(), l.cols))
                                   : Eigen::VectorXd(stats->hessian().diagonal());
        for (std::size_t si = 0; si < settings.size(); ++si) {
            if (feedback) {
                if (feedback->isCancelled())
                    return unexpected(cancelled());
                feedback->setStatus(QStringLiteral("%1 %2").arg(l.name, settings[si].label()));
                feedback->setProgress(done / units);
            }
            const auto tq = Clock::now();
            auto q = compress(static_cast<int>(li), settings[si]);
            if (!q)
                return unexpected(std::move(q.error()).forLayer(l.name));
            deq = std::move(q->weights);
            const std::size_t cell = li * settings.size() + si;
            quantizeSecondsPerCell[cell] = secondsSince(tq);
            r.quantizeSeconds += quantizeSecondsPerCell[cell];
            r.bytes[cell] = q->bytes;
            // Proxies: Σ_i ΔW_ij² per input column j, then the weightings.
            double normW = 0, normD = 0;
            std::vector<double> colErr(static_cast<std::size_t>(l.cols), 0.0);
            for (std::int64_t i = 0; i < l.rows; ++i)
                for (std::int64_t j = 0; j < l.cols; ++j) {
                    const double wv = w.data()[i * l.cols + j];
                    const double d = static_cast<double>(deq[static_cast<std::size_t>(i * l.cols + j)]) - wv;
                    normW += wv * wv;
                    normD += d * d;
                    colErr[static_cast<std::size_t>(j)] += d * d;
                }
            sumSquaredError[cell] = normD;
            r.relativeError[cell] = normW > 0 ? normD / normW : 0.0;
            if (stats) {
                double he = 0, ae = 0;
                for (std::int64_t j = 0; j < l.cols; ++j) {
                    he += diagH[j] * colErr[static_cast<std::size_t>(j)];
                    ae += stats->meanSquare()[static_cast<std::size_t>(j)] * colErr[static_cast<std::size_t>(j)];
                }
                r.hessianError[cell] = he;
                r.activationError[cell] = ae;
            }
            const auto tm = Clock::now();
            auto m = measureCached(static_cast<int>(li), deq.data());
            r.measureSeconds += secondsSince(tm);
            if (!m)
                return unexpected(m.error());
            r.deltaLoss[cell] = m->deltaLoss;
            r.kl[cell] = m->kl;
            r.perplexity[cell] = m->perplexity;
            if (naiveSample[li] && si == 0) {
                const auto tn = Clock::now();
                if (auto naive = measureNaive(static_cast<int>(li), deq.data()); !naive)
                    return unexpected(naive.error());
                naiveForwardSeconds += secondsSince(tn);
                r.naiveTimingSeconds += secondsSince(tn);
                ++naiveForwardCount;
            }
            done += 1;
        }
        if (probes > 0) {
            if (feedback) {
                if (feedback->isCancelled())
                    return unexpected(cancelled());
                feedback->setStatus(QStringLiteral("%1 Hessian trace").arg(l.name));
                feedback->setProgress(done / units);
            }
            const auto th = Clock::now();
            auto trace = hessianTrace(static_cast<int>(li), probes);
            if (!trace)
                return unexpected(trace.error());
            r.hutchinsonSeconds += secondsSince(th);
            r.hutchinsonTrace[li] = *trace;
            for (std::size_t si = 0; si < settings.size(); ++si) {
                const std::size_t cell = li * settings.size() + si;
                r.hutchinsonError[cell] = *trace / static_cast<double>(l.rows * l.cols) * sumSquaredError[cell];
            }
            done += 2.0 * probes;
        }
    }
    // The per-cell script: reload + (GPTQ) calibration + quantize + the naive forward, per cell.
    if (m_options.naiveSamples > 0 && !settings.empty()) {
        const auto tn = Clock::now();
        // Reloading the model (what a script does per cell without a working copy to swap into).
        double reload = 0;
        if (!m_original->folder().isEmpty()) {
            const auto tl = Clock::now();
            auto again = Model::load(m_original->folder());
            if (!again)
                return unexpected(again.error());
            reload = secondsSince(tl);
        }
        const double forwardPerCell = naiveForwardSeconds / std::max(1, naiveForwardCount);
        r.naiveSecondsEstimate = forwardPerCell * static_cast<double>(cells);
        // The per-cell script also recalibrates for GPTQ settings.
        bool anyGptq = false;
        for (const SensitivitySetting &st : settings)
            anyGptq = anyGptq || needsCalibration(st);
        // Calibration up to a layer's input costs in proportion to its depth: time the first
        // layer's (block 0, q/k/v input) and the last one's (last block, down_proj input), and
        // interpolate by the layer's position.
        double calibFirst = 0, calibLast = 0;
        if (anyGptq && !m_calibSequences.empty()) {
            const int lastBlock = m_original->config().numLayers - 1;
            for (const auto &[block, group] : {std::pair{0, 0}, std::pair{lastBlock, 3}}) {
                const auto tc = Clock::now();
                OneInputHook hook(block, -1, group);
                for (const auto &seq : m_calibSequences) {
                    KVCache c = m_fast->makeCache(static_cast<int>(seq.size()));
                    std::vector<float> out;
                    if (auto ok = m_fast->forward(seq, c, out, true, &hook); !ok)
                        return unexpected(ok.error());
                }
                (block == 0 ? calibFirst : calibLast) = secondsSince(tc);
            }
        }
        double script = 0;
        for (std::size_t li = 0; li < m_layers.size(); ++li) {
            const double frac = m_layers.size() > 1 ? static_cast<double>(li) / static_cast<double>(m_layers.size() - 1) : 0.0;
            const double calib = calibFirst + frac * (calibLast - calibFirst);
            for (std::size_t si = 0; si < settings.size(); ++si) {
                script += reload + forwardPerCell + quantizeSecondsPerCell[li * settings.size() + si];
                if (needsCalibration(settings[si]))
                    script += calib;
            }
        }
        r.naiveScriptSecondsEstimate = script;
        r.naiveTimingSeconds += secondsSince(tn);
    }
    r.seconds = secondsSince(t0) + m_setupSeconds;
    if (feedback)
        feedback->setProgress(1.0);
    return r;
}

} // namespace bitsmith::core

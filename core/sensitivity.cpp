// sensitivity.cpp: the cached per-layer sensitivity sweep (see sensitivity.h).
#include "core/sensitivity.h"

#include "core/calibration.h"    // InputStatistics, makeCalibrationSequences
#include "core/evaluate.h"       // logSoftmax
#include "core/quant/gptq.h"     // gptqQuantize
#include "core/quant/quantizer.h" // quantizeRtn
#include "core/recipe.h"         // linearLayers
#include "core/transformer.h"    // Transformer, LinearInputHook

#include <QRegularExpression>

#include <chrono>
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

class StatisticsHook final : public LinearInputHook
{
public:
    explicit StatisticsHook(std::vector<std::unique_ptr<InputStatistics>> &stats) : m_stats(stats) {}
    bool onLinearInput(int block, WeightRole role, const float *x, std::int64_t rows, std::int64_t cols) override
    {
        auto &s = m_stats[static_cast<std::size_t>(block * kInputGroups + inputGroup(role))];
        if (!s)
            s = std::make_unique<InputStatistics>(cols, true, 0);
        s->add(x, rows);
        return true;
    }

private:
    std::vector<std::unique_ptr<InputStatistics>> &m_stats;
};

Error cancelled()
{
    return fail(ErrorCode::Cancelled, QStringLiteral("sensitivity analysis cancelled"));
}

} // namespace

QString SensitivitySetting::label() const
{
    QString s = QStringLiteral("%1:w%2").arg(technique).arg(format.bits);
    if (format.groupSize > 0)
        s += QStringLiteral("g%1").arg(format.groupSize);
    else if (format.groupSize == -1)
        s += QStringLiteral("t");
    return s;
}

Expected<std::vector<SensitivitySetting>> parseSensitivitySettings(const QString &spec)
{
    static const QRegularExpression item(QStringLiteral("^([a-z0-9_-]+):w([0-9]+)(?:g([0-9]+))?$"));
    std::vector<SensitivitySetting> out;
    for (const QString &raw : spec.split(QLatin1Char(','), Qt::SkipEmptyParts)) {
        const QString s = raw.trimmed().toLower();
        const auto m = item.match(s);
        auto bad = [&](const QString &why) {
            return unexpected(fail(ErrorCode::InvalidArgument, QStringLiteral("bad candidate '%1': %2").arg(raw.trimmed(), why))
                                  .forParameter(QStringLiteral("candidates"))
                                  .withHint(QStringLiteral("use METHOD:wBITS[gGROUP], e.g. rtn:w2g64,rtn:w3,gptq:w4g128,rtn:w8")));
        };
        if (!m.hasMatch())
            return bad(QStringLiteral("not METHOD:wBITS[gGROUP]"));
        SensitivitySetting setting;
        setting.technique = m.captured(1);
        if (setting.technique != QLatin1String("rtn") && setting.technique != QLatin1String("gptq"))
            return bad(QStringLiteral("method must be rtn or gptq"));
        setting.format.bits = m.captured(2).toInt();
        setting.format.groupSize = m.captured(3).isEmpty() ? 0 : m.captured(3).toInt();
        setting.format.symmetric = false;
        if (setting.format.bits < 2 || setting.format.bits > 8)
            return bad(QStringLiteral("bits must be 2..8"));
        if (!m.captured(3).isEmpty() && setting.format.groupSize < 1)
            return bad(QStringLiteral("group size must be positive"));
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
    a->m_work = model->cloneMutable();
    // Eigen kernels read the working copy's weights live, so swapping a layer in place is seen.
    a->m_transformer = std::make_unique<Transformer>(a->m_work, LinearBackend::Eigen, false);
    for (const ResolvedLayer &l : linearLayers(*model)) {
        if (l.role == WeightRole::LmHead || l.block < 0)
            continue;
        a->m_layers.push_back({l.name, l.tensor, l.role, l.block, l.rows, l.cols});
    }
    for (int w = 0; w < options.windows; ++w)
        a->m_windows.emplace_back(evalTokens.begin() + static_cast<std::ptrdiff_t>(w) * options.ctx,
                                  evalTokens.begin() + static_cast<std::ptrdiff_t>(w + 1) * options.ctx);

    // Original pass over the evaluation windows: block inputs and log-probs.
    const Transformer &tf = *a->m_transformer;
    const int blocks = config.numLayers;
    const std::int64_t hidden = config.hiddenSize;
    const std::int64_t vocab = tf.vocabSize();
    const std::int64_t ctx = options.ctx;
    const std::size_t windowFloats = static_cast<std::size_t>(ctx * hidden);
    a->m_blockInputs.assign(static_cast<std::size_t>(blocks), std::vector<float>(windowFloats * a->m_windows.size()));
    a->m_baseLogProbs.resize(a->m_windows.size() * static_cast<std::size_t>((ctx - 1) * vocab));
    a->m_baseProbs.resize(a->m_baseLogProbs.size());
    KVCache cache = tf.makeCache(options.ctx);
    std::vector<float> x(windowFloats), logits;
    std::vector<double> lp;
    double nll = 0;
    for (std::size_t w = 0; w < a->m_windows.size(); ++w) {
        if (feedback && feedback->isCancelled())
            return unexpected(cancelled());
        cache.clear();
        tf.embed(a->m_windows[w], x.data());
        for (int b = 0; b < blocks; ++b) {
            std::copy(x.begin(), x.end(), a->m_blockInputs[static_cast<std::size_t>(b)].begin() + static_cast<std::ptrdiff_t>(w * windowFloats));
            tf.runBlock(b, x.data(), ctx, cache);
        }
        tf.head(x.data(), ctx, logits);
        for (std::int64_t i = 0; i + 1 < ctx; ++i) {
            logSoftmax(logits.data() + i * vocab, vocab, lp);
            nll -= lp[static_cast<std::size_t>(a->m_windows[w][static_cast<std::size_t>(i + 1)])];
            const std::size_t at = (w * static_cast<std::size_t>(ctx - 1) + static_cast<std::size_t>(i)) * static_cast<std::size_t>(vocab);
            for (std::int64_t v = 0; v < vocab; ++v) {
                a->m_baseLogProbs[at + static_cast<std::size_t>(v)] = static_cast<float>(lp[static_cast<std::size_t>(v)]);
                a->m_baseProbs[at + static_cast<std::size_t>(v)] = static_cast<float>(std::exp(lp[static_cast<std::size_t>(v)]));
            }
        }
    }
    a->m_baseLoss = nll / static_cast<double>(a->m_windows.size() * static_cast<std::size_t>(ctx - 1));

    // Calibration statistics of the original model (the working copy is still unmodified).
    a->m_stats.resize(static_cast<std::size_t>(blocks * kInputGroups));
    if (calibTokens.size() >= 2) {
        auto seqs = makeCalibrationSequences(calibTokens, options.calibSequences,
                                             std::min(options.calibLength, config.maxPositions), options.seed);
        if (!seqs)
            return unexpected(seqs.error());
        StatisticsHook hook(a->m_stats);
        for (const auto &seq : *seqs) {
            if (feedback && feedback->isCancelled())
                return unexpected(cancelled());
            KVCache c = tf.makeCache(static_cast<int>(seq.size()));
            std::vector<float> out;
            if (auto ok = tf.forward(seq, c, out, true, &hook); !ok)
                return unexpected(ok.error());
        }
    }
    a->m_setupSeconds = secondsSince(t0);
    return a;
}

Expected<QuantizedTensor> SensitivityAnalysis::quantize(int layer, const SensitivitySetting &setting) const
{
    const Layer &l = m_layers[static_cast<std::size_t>(layer)];
    const MatrixView w = m_original->weight(l.tensor);
    if (setting.technique == QLatin1String("rtn"))
        return quantizeRtn(w, setting.format);
    if (setting.technique == QLatin1String("gptq")) {
        const auto &s = m_stats[static_cast<std::size_t>(l.block * kInputGroups + inputGroup(l.role))];
        if (!s)
            return unexpected(fail(ErrorCode::InvalidArgument, QStringLiteral("GPTQ needs calibration text"))
                                  .forParameter(QStringLiteral("calib")).forLayer(l.name));
        auto r = gptqQuantize(w, s->hessian(), setting.format);
        if (!r)
            return unexpected(std::move(r.error()).forLayer(l.name));
        return std::move(r->q);
    }
    return unexpected(fail(ErrorCode::Unsupported, QStringLiteral("unknown technique '%1'").arg(setting.technique))
                          .forParameter(QStringLiteral("candidates")));
}

Expected<LayerMeasurement> SensitivityAnalysis::measureCached(int layer, const float *weights)
{
    return measure(layer, weights, false);
}

Expected<LayerMeasurement> SensitivityAnalysis::measureNaive(int layer, const float *weights)
{
    return measure(layer, weights, true);
}

Expected<LayerMeasurement> SensitivityAnalysis::measure(int layer, const float *weights, bool naive)
{
    if (layer < 0 || layer >= layerCount())
        return unexpected(fail(ErrorCode::InvalidArgument, QStringLiteral("layer index %1 out of range").arg(layer))
                              .forParameter(QStringLiteral("layer")));
    const Layer &l = m_layers[static_cast<std::size_t>(layer)];
    float *live = m_work->mutableWeight(l.tensor);
    const std::size_t n = static_cast<std::size_t>(l.rows * l.cols);
    // Swap the layer in, and back out whatever happens below.
    std::vector<float> backup(live, live + n);
    std::memcpy(live, weights, n * sizeof(float));
    struct Restore
    {
        float *dst;
        const std::vector<float> &src;
        ~Restore() { std::memcpy(dst, src.data(), src.size() * sizeof(float)); }
    } restore{live, backup};

    const Transformer &tf = *m_transformer;
    const int blocks = m_work->config().numLayers;
    const std::int64_t hidden = m_work->config().hiddenSize;
    const std::int64_t vocab = tf.vocabSize();
    const std::int64_t ctx = m_options.ctx;
    const std::size_t windowFloats = static_cast<std::size_t>(ctx * hidden);
    KVCache cache = tf.makeCache(m_options.ctx);
    std::vector<float> x(windowFloats), logits;
    std::vector<double> lp;
    double nll = 0, kl = 0;
    for (std::size_t w = 0; w < m_windows.size(); ++w) {
        cache.clear();
        if (naive) {
            // The naive way: a full forward from the tokens.
            if (auto ok = tf.forward(m_windows[w], cache, logits); !ok)
                return unexpected(ok.error());
        } else {
            const auto &in = m_blockInputs[static_cast<std::size_t>(l.block)];
            std::copy_n(in.begin() + static_cast<std::ptrdiff_t>(w * windowFloats), windowFloats, x.begin());
            for (int b = l.block; b < blocks; ++b)
                tf.runBlock(b, x.data(), ctx, cache);
            tf.head(x.data(), ctx, logits);
        }
        for (std::int64_t i = 0; i + 1 < ctx; ++i) {
            logSoftmax(logits.data() + i * vocab, vocab, lp);
            nll -= lp[static_cast<std::size_t>(m_windows[w][static_cast<std::size_t>(i + 1)])];
            const std::size_t at = (w * static_cast<std::size_t>(ctx - 1) + static_cast<std::size_t>(i)) * static_cast<std::size_t>(vocab);
            const float *base = m_baseLogProbs.data() + at;
            const float *prob = m_baseProbs.data() + at;
            double k = 0;
            for (std::int64_t v = 0; v < vocab; ++v)
                k += static_cast<double>(prob[v]) * (static_cast<double>(base[v]) - lp[static_cast<std::size_t>(v)]);
            kl += k;
        }
    }
    const double positions = static_cast<double>(m_windows.size() * static_cast<std::size_t>(ctx - 1));
    LayerMeasurement m;
    m.meanNll = nll / positions;
    m.deltaLoss = m.meanNll - m_baseLoss;
    m.kl = kl / positions;
    m.perplexity = std::exp(m.meanNll);
    return m;
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
    const std::size_t cells = m_layers.size() * settings.size();
    for (auto *m : {&r.bytes, &r.deltaLoss, &r.kl, &r.perplexity, &r.relativeError, &r.hessianError, &r.activationError})
        m->assign(cells, std::numeric_limits<double>::quiet_NaN());
    const double nan = std::numeric_limits<double>::quiet_NaN();
    std::vector<float> deq;
    for (std::size_t li = 0; li < m_layers.size(); ++li) {
        const Layer &l = m_layers[li];
        r.layers.push_back(l.name);
        r.parameters.push_back(l.rows * l.cols);
        const MatrixView w = m_original->weight(l.tensor);
        const auto &stats = m_stats[static_cast<std::size_t>(l.block * kInputGroups + inputGroup(l.role))];
        Eigen::VectorXd diagH;
        if (stats)
            diagH = stats->hessian().diagonal();
        for (std::size_t si = 0; si < settings.size(); ++si) {
            if (feedback) {
                if (feedback->isCancelled())
                    return unexpected(cancelled());
                feedback->setStatus(QStringLiteral("%1 %2").arg(l.name, settings[si].label()));
                feedback->setProgress(static_cast<double>(li * settings.size() + si) / static_cast<double>(cells));
            }
            auto q = quantize(static_cast<int>(li), settings[si]);
            if (!q)
                return unexpected(std::move(q.error()).forLayer(l.name));
            deq.resize(static_cast<std::size_t>(l.rows * l.cols));
            q->dequantize(deq.data());
            const std::size_t cell = li * settings.size() + si;
            r.bytes[cell] = static_cast<double>(q->storageBits()) / 8.0;
            // Proxies: Σ_i ΔW_ij² per input column j, then the weightings.
            double normW = 0, normD = 0;
            std::vector<double> colErr(static_cast<std::size_t>(l.cols), 0.0);
            for (std::int64_t i = 0; i < l.rows; ++i)
                for (std::int64_t j = 0; j < l.cols; ++j) {
                    const double wv = w.data[i * l.cols + j];
                    const double d = static_cast<double>(deq[static_cast<std::size_t>(i * l.cols + j)]) - wv;
                    normW += wv * wv;
                    normD += d * d;
                    colErr[static_cast<std::size_t>(j)] += d * d;
                }
            r.relativeError[cell] = normW > 0 ? normD / normW : 0.0;
            if (stats) {
                double he = 0, ae = 0;
                for (std::int64_t j = 0; j < l.cols; ++j) {
                    he += diagH[j] * colErr[static_cast<std::size_t>(j)];
                    ae += stats->meanSquare()[static_cast<std::size_t>(j)] * colErr[static_cast<std::size_t>(j)];
                }
                r.hessianError[cell] = he;
                r.activationError[cell] = ae;
            } else {
                r.hessianError[cell] = nan;
                r.activationError[cell] = nan;
            }
            const auto tm = Clock::now();
            auto m = measureCached(static_cast<int>(li), deq.data());
            r.measureSeconds += secondsSince(tm);
            if (!m)
                return unexpected(m.error());
            r.deltaLoss[cell] = m->deltaLoss;
            r.kl[cell] = m->kl;
            r.perplexity[cell] = m->perplexity;
        }
    }
    // The naive way on a few layers spread over the depth, extrapolated to all pairs.
    if (m_options.naiveSamples > 0 && !settings.empty()) {
        const int samples = std::min<int>(m_options.naiveSamples, layerCount());
        double naive = 0;
        for (int s = 0; s < samples; ++s) {
            if (feedback && feedback->isCancelled())
                return unexpected(cancelled());
            const int li = samples > 1 ? s * (layerCount() - 1) / (samples - 1) : 0;
            auto q = quantize(li, settings.front());
            if (!q)
                return unexpected(q.error());
            const Layer &l = m_layers[static_cast<std::size_t>(li)];
            deq.resize(static_cast<std::size_t>(l.rows * l.cols));
            q->dequantize(deq.data());
            const auto tm = Clock::now();
            if (auto m = measureNaive(li, deq.data()); !m)
                return unexpected(m.error());
            naive += secondsSince(tm);
        }
        r.naiveSecondsEstimate = naive / samples * static_cast<double>(cells);
    }
    r.seconds = secondsSince(t0) + m_setupSeconds;
    if (feedback)
        feedback->setProgress(1.0);
    return r;
}

} // namespace bitsmith::core

// evaluate.cpp: windowed perplexity, KL and top-1 agreement.
#include "evaluate.h"

#include <QFile>

#include <algorithm>
#include <chrono>
#include <cmath>

namespace bitsmith::core {

Expected<std::string> readTextFile(const QString &path)
{
    QFile f(path);
    if (!f.open(QIODevice::ReadOnly))
        return unexpected(fail(ErrorCode::Io, QStringLiteral("cannot open text file: %1").arg(f.errorString()))
                              .inFile(path)
                              .withHint(QStringLiteral("check the path to the evaluation text")));
    const QByteArray raw = f.readAll();
    std::string out;
    out.reserve(static_cast<std::size_t>(raw.size()));
    for (qsizetype i = 0; i < raw.size(); ++i) {
        const char ch = raw[i];
        if (ch == '\r') {
            out.push_back('\n');
            if (i + 1 < raw.size() && raw[i + 1] == '\n')
                ++i;
        } else {
            out.push_back(ch);
        }
    }
    return out;
}

Expected<std::vector<std::int32_t>> tokenizeTextFile(const Model &model, const QString &path)
{
    if (!model.tokenizer())
        return unexpected(fail(ErrorCode::InvalidArgument, QStringLiteral("the model folder has no tokenizer.json"))
                              .inFile(model.folder())
                              .withHint(QStringLiteral("copy the checkpoint's tokenizer.json into the folder")));
    auto text = readTextFile(path);
    if (!text)
        return unexpected(text.error());
    return model.tokenizer()->encode(*text, false);
}

Expected<int> resolveContext(const ModelConfig &config, int requested)
{
    const int ctx = requested > 0 ? requested : config.maxPositions;
    if (requested < 0 || ctx < 2 || ctx > config.maxPositions)
        return unexpected(fail(ErrorCode::InvalidArgument, QStringLiteral("ctx %1 must be between 2 and the model's context %2")
                                                               .arg(requested)
                                                               .arg(config.maxPositions))
                              .forParameter(QStringLiteral("ctx"))
                              .withHint(QStringLiteral("use --ctx %1 or less, or leave it out for the model's context")
                                            .arg(config.maxPositions)));
    return ctx;
}

void logSoftmax(const float *logits, std::int64_t n, std::vector<double> &out)
{
    out.resize(static_cast<std::size_t>(n));
    double maxv = -INFINITY;
    for (std::int64_t i = 0; i < n; ++i)
        maxv = std::max(maxv, static_cast<double>(logits[i]));
    double sum = 0.0;
    for (std::int64_t i = 0; i < n; ++i)
        sum += std::exp(static_cast<double>(logits[i]) - maxv);
    const double lse = maxv + std::log(sum);
    for (std::int64_t i = 0; i < n; ++i)
        out[static_cast<std::size_t>(i)] = static_cast<double>(logits[i]) - lse;
}

namespace {

struct WindowPlan
{
    int ctx = 0;
    std::int64_t windows = 0;
};

Expected<WindowPlan> planWindows(const ModelConfig &config, std::span<const std::int32_t> tokens, const EvalOptions &o)
{
    auto ctx = resolveContext(config, o.ctx);
    if (!ctx)
        return unexpected(ctx.error());
    WindowPlan plan;
    plan.ctx = *ctx;
    plan.windows = static_cast<std::int64_t>(tokens.size()) / plan.ctx;
    if (o.maxWindows > 0)
        plan.windows = std::min<std::int64_t>(plan.windows, o.maxWindows);
    if (plan.windows == 0)
        return unexpected(fail(ErrorCode::InvalidArgument, QStringLiteral("the text has %1 tokens, fewer than one window of %2")
                                                               .arg(tokens.size())
                                                               .arg(plan.ctx))
                              .forParameter(QStringLiteral("ctx"))
                              .withHint(QStringLiteral("use a longer text or a smaller --ctx")));
    return plan;
}

void finish(PerplexityResult &r, double nllSum, double seconds)
{
    r.meanNll = nllSum / static_cast<double>(r.scoredTokens);
    r.perplexity = std::exp(r.meanNll);
    r.seconds = seconds;
    r.tokensPerSecond = seconds > 0 ? static_cast<double>(r.windows * r.ctx) / seconds : 0.0;
}

} // namespace

Expected<PerplexityResult> evaluatePerplexity(const Transformer &model, std::span<const std::int32_t> tokens,
                                              const EvalOptions &options, Feedback *feedback)
{
    auto plan = planWindows(model.model().config(), tokens, options);
    if (!plan)
        return unexpected(plan.error());
    PerplexityResult r;
    r.ctx = plan->ctx;
    r.textTokens = static_cast<std::int64_t>(tokens.size());
    r.windows = plan->windows;
    if (options.scoreFrom < 0 || options.scoreFrom >= plan->ctx - 1)
        return unexpected(fail(ErrorCode::InvalidArgument, QStringLiteral("score-from %1 leaves nothing to score in windows of %2 tokens")
                                                               .arg(options.scoreFrom)
                                                               .arg(plan->ctx))
                              .forParameter(QStringLiteral("score-from")));
    r.scoredTokens = plan->windows * (plan->ctx - 1 - options.scoreFrom);
    const std::int64_t vocab = model.vocabSize();
    KVCache cache = model.makeCache(plan->ctx);
    std::vector<float> logits;
    std::vector<double> lp;
    double nllSum = 0.0, seconds = 0.0;
    for (std::int64_t w = 0; w < plan->windows; ++w) {
        if (feedback) {
            if (feedback->isCancelled())
                return unexpected(fail(ErrorCode::Cancelled, QStringLiteral("evaluation cancelled")));
            feedback->setStatus(QStringLiteral("window %1/%2").arg(w + 1).arg(plan->windows));
            feedback->setProgress(static_cast<double>(w) / static_cast<double>(plan->windows));
        }
        const auto window = tokens.subspan(static_cast<std::size_t>(w * plan->ctx), static_cast<std::size_t>(plan->ctx));
        cache.clear();
        const auto t0 = std::chrono::steady_clock::now();
        if (auto ok = model.forward(window, cache, logits); !ok)
            return unexpected(ok.error());
        seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        for (int i = options.scoreFrom; i + 1 < plan->ctx; ++i) {
            logSoftmax(logits.data() + static_cast<std::int64_t>(i) * vocab, vocab, lp);
            nllSum -= lp[static_cast<std::size_t>(window[static_cast<std::size_t>(i + 1)])];
        }
    }
    finish(r, nllSum, seconds);
    if (feedback)
        feedback->setProgress(1.0);
    return r;
}

Expected<ComparisonResult> compareModels(const Transformer &reference, const Transformer &candidate,
                                         std::span<const std::int32_t> tokens, const EvalOptions &options,
                                         Feedback *feedback)
{
    if (reference.vocabSize() != candidate.vocabSize())
        return unexpected(fail(ErrorCode::Mismatch, QStringLiteral("the models' vocabularies differ (%1 vs %2)")
                                                        .arg(reference.vocabSize())
                                                        .arg(candidate.vocabSize()))
                              .withHint(QStringLiteral("compare models that share a tokenizer")));
    auto plan = planWindows(reference.model().config(), tokens, options);
    if (!plan)
        return unexpected(plan.error());
    if (auto c2 = resolveContext(candidate.model().config(), plan->ctx); !c2)
        return unexpected(c2.error());
    ComparisonResult r;
    for (PerplexityResult *p : {&r.reference, &r.candidate}) {
        p->ctx = plan->ctx;
        p->textTokens = static_cast<std::int64_t>(tokens.size());
        p->windows = plan->windows;
        p->scoredTokens = plan->windows * (plan->ctx - 1);
    }
    const std::int64_t vocab = reference.vocabSize();
    KVCache cacheA = reference.makeCache(plan->ctx), cacheB = candidate.makeCache(plan->ctx);
    std::vector<float> la, lb;
    std::vector<double> pa, pb;
    double nllA = 0, nllB = 0, klSum = 0, secA = 0, secB = 0;
    std::int64_t agree = 0;
    for (std::int64_t w = 0; w < plan->windows; ++w) {
        if (feedback) {
            if (feedback->isCancelled())
                return unexpected(fail(ErrorCode::Cancelled, QStringLiteral("comparison cancelled")));
            feedback->setProgress(static_cast<double>(w) / static_cast<double>(plan->windows));
        }
        const auto window = tokens.subspan(static_cast<std::size_t>(w * plan->ctx), static_cast<std::size_t>(plan->ctx));
        cacheA.clear();
        cacheB.clear();
        auto t0 = std::chrono::steady_clock::now();
        if (auto ok = reference.forward(window, cacheA, la); !ok)
            return unexpected(ok.error());
        auto t1 = std::chrono::steady_clock::now();
        if (auto ok = candidate.forward(window, cacheB, lb); !ok)
            return unexpected(ok.error());
        auto t2 = std::chrono::steady_clock::now();
        secA += std::chrono::duration<double>(t1 - t0).count();
        secB += std::chrono::duration<double>(t2 - t1).count();
        for (int i = 0; i + 1 < plan->ctx; ++i) {
            const float *ra = la.data() + static_cast<std::int64_t>(i) * vocab;
            const float *rb = lb.data() + static_cast<std::int64_t>(i) * vocab;
            logSoftmax(ra, vocab, pa);
            logSoftmax(rb, vocab, pb);
            const auto next = static_cast<std::size_t>(window[static_cast<std::size_t>(i + 1)]);
            nllA -= pa[next];
            nllB -= pb[next];
            double kl = 0.0;
            for (std::int64_t v = 0; v < vocab; ++v) {
                const double p = std::exp(pa[static_cast<std::size_t>(v)]);
                kl += p * (pa[static_cast<std::size_t>(v)] - pb[static_cast<std::size_t>(v)]);
            }
            klSum += kl;
            if (std::max_element(ra, ra + vocab) - ra == std::max_element(rb, rb + vocab) - rb)
                ++agree;
        }
    }
    finish(r.reference, nllA, secA);
    finish(r.candidate, nllB, secB);
    const auto n = static_cast<double>(r.reference.scoredTokens);
    r.meanKl = klSum / n;
    r.top1Agreement = static_cast<double>(agree) / n;
    if (feedback)
        feedback->setProgress(1.0);
    return r;
}

} // namespace bitsmith::core

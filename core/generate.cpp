// generate.cpp: sampling and the generation loop.
#include "generate.h"

#include "core/random.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace bitsmith::core {

std::int32_t sampleToken(const float *logits, std::int64_t vocab, const GenerateOptions &o, std::uint64_t &rngState)
{
    if (o.temperature <= 0.0)
        return static_cast<std::int32_t>(std::max_element(logits, logits + vocab) - logits);
    std::vector<std::int32_t> idx(static_cast<std::size_t>(vocab));
    std::iota(idx.begin(), idx.end(), 0);
    std::size_t keep = idx.size();
    if (o.topK > 0 && static_cast<std::size_t>(o.topK) < keep)
        keep = static_cast<std::size_t>(o.topK);
    std::partial_sort(idx.begin(), idx.begin() + static_cast<std::ptrdiff_t>(keep), idx.end(),
                      [&](std::int32_t a, std::int32_t b) { return logits[a] > logits[b]; });
    std::vector<double> p(keep);
    const double maxv = logits[idx[0]];
    double sum = 0.0;
    for (std::size_t i = 0; i < keep; ++i) {
        p[i] = std::exp((logits[idx[i]] - maxv) / o.temperature);
        sum += p[i];
    }
    if (o.topP < 1.0) {
        double cum = 0.0;
        std::size_t cut = keep;
        for (std::size_t i = 0; i < keep; ++i) {
            cum += p[i] / sum;
            if (cum >= o.topP) {
                cut = i + 1;
                break;
            }
        }
        keep = cut;
        sum = std::accumulate(p.begin(), p.begin() + static_cast<std::ptrdiff_t>(keep), 0.0);
    }
    double r = uniform01(rngState) * sum;
    for (std::size_t i = 0; i < keep; ++i) {
        r -= p[i];
        if (r <= 0.0)
            return idx[i];
    }
    return idx[keep - 1];
}

Expected<std::vector<std::int32_t>> generate(const Transformer &model, std::span<const std::int32_t> prompt,
                                             const GenerateOptions &o, const std::function<bool(std::int32_t)> &onToken,
                                             Feedback *feedback)
{
    if (prompt.empty())
        return unexpected(fail(ErrorCode::InvalidArgument, QStringLiteral("the prompt is empty"))
                              .forParameter(QStringLiteral("prompt")));
    if (o.maxTokens < 0)
        return unexpected(fail(ErrorCode::InvalidArgument, QStringLiteral("max-tokens must not be negative"))
                              .forParameter(QStringLiteral("max-tokens")));
    const int maxPos = model.model().config().maxPositions;
    const int capacity = std::min<int>(maxPos, static_cast<int>(prompt.size()) + o.maxTokens);
    if (static_cast<int>(prompt.size()) > capacity)
        return unexpected(fail(ErrorCode::InvalidArgument, QStringLiteral("the prompt has %1 tokens, more than the context of %2")
                                                               .arg(prompt.size())
                                                               .arg(maxPos))
                              .forParameter(QStringLiteral("prompt")));
    KVCache cache = model.makeCache(capacity);
    std::vector<float> logits;
    if (auto ok = model.forward(prompt, cache, logits, true); !ok)
        return unexpected(ok.error());
    std::uint64_t rng = o.seed;
    std::vector<std::int32_t> out;
    const std::int32_t eos = model.model().config().eosTokenId;
    while (static_cast<int>(out.size()) < o.maxTokens) {
        if (feedback && feedback->isCancelled())
            return unexpected(fail(ErrorCode::Cancelled, QStringLiteral("generation cancelled")));
        const std::int32_t next = sampleToken(logits.data(), model.vocabSize(), o, rng);
        out.push_back(next);
        if (onToken && !onToken(next))
            break;
        if (o.stopAtEos && next == eos)
            break;
        if (cache.length >= capacity)
            break; // context full
        const std::int32_t one[1] = {next};
        if (auto ok = model.forward(one, cache, logits, true); !ok)
            return unexpected(ok.error());
        if (feedback)
            feedback->setProgress(static_cast<double>(out.size()) / o.maxTokens);
    }
    return out;
}

} // namespace bitsmith::core

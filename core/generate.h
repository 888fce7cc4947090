// generate.h: autoregressive text generation with a KV cache: greedy (temperature 0) or
// temperature / top-k / top-p sampling, seeded and reproducible.
#pragma once

#include "error.h"
#include "feedback.h"
#include "transformer.h"

#include <cstdint>
#include <functional>
#include <span>
#include <vector>

namespace bitsmith::core {

struct GenerateOptions
{
    int maxTokens = 64;
    double temperature = 0.8; // 0 = greedy
    int topK = 40;            // 0 = no limit
    double topP = 0.95;       // 1 = no nucleus cut
    std::uint64_t seed = 0;
    bool stopAtEos = true;
};

// Returns the new token ids (without the prompt). `onToken` is called for each new id; returning
// false stops generation early.
Expected<std::vector<std::int32_t>> generate(const Transformer &model, std::span<const std::int32_t> prompt,
                                             const GenerateOptions &options,
                                             const std::function<bool(std::int32_t)> &onToken = {},
                                             Feedback *feedback = nullptr);

// Picks the next token from one row of logits (exposed for tests).
std::int32_t sampleToken(const float *logits, std::int64_t vocab, const GenerateOptions &options,
                         std::uint64_t &rngState);

} // namespace bitsmith::core

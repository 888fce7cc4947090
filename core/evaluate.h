// evaluate.h: perplexity under the project's protocol (../shared/REFERENCE.md: tokenize the whole
// text without special tokens, non-overlapping windows of ctx tokens, remainder dropped, tokens
// 1..ctx-1 of each window scored given the previous ones, PPL = exp(mean NLL)), the KL
// divergence and top-1 agreement between two models' next-token distributions, and speed.
#pragma once

#include "error.h"
#include "feedback.h"
#include "transformer.h"

#include <QString>

#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace bitsmith::core {

struct EvalOptions
{
    int ctx = 0;        // window length in tokens; 0 = the model's max_position_embeddings
    int maxWindows = 0; // 0 = all windows
    // evaluatePerplexity only: score the predictions made at positions >= scoreFrom of each window
    // (0: the protocol's tokens 1..ctx-1; ctx/2: llama.cpp's llama-perplexity, which scores the
    // second half of each window)
    int scoreFrom = 0;
};

struct PerplexityResult
{
    double perplexity = 0.0;
    double meanNll = 0.0;
    std::int64_t textTokens = 0;   // tokens of the whole text
    std::int64_t windows = 0;      // windows evaluated
    std::int64_t scoredTokens = 0; // windows * (ctx - 1)
    int ctx = 0;
    double seconds = 0.0;          // forward passes only
    double tokensPerSecond = 0.0;  // tokens run through the model per second
};

struct ComparisonResult
{
    double meanKl = 0.0;       // mean over scored positions of KL(reference ‖ candidate), nats
    double top1Agreement = 0.0; // share of positions where both argmax agree
    PerplexityResult reference;
    PerplexityResult candidate;
};

// Reads a text file as UTF-8 with CRLF (and lone CR) converted to LF.
Expected<std::string> readTextFile(const QString &path);

// Reads a text file (as readTextFile) and encodes it with the model's tokenizer, without special
// tokens (the perplexity protocol). Errors: no tokenizer.json in the model folder, unreadable file.
Expected<std::vector<std::int32_t>> tokenizeTextFile(const Model &model, const QString &path);

// The window length to use for a model and a requested ctx (0 = model max), validated.
Expected<int> resolveContext(const ModelConfig &config, int requested);

Expected<PerplexityResult> evaluatePerplexity(const Transformer &model, std::span<const std::int32_t> tokens,
                                              const EvalOptions &options, Feedback *feedback = nullptr);

// Both models must share the vocabulary (same tokenizer).
Expected<ComparisonResult> compareModels(const Transformer &reference, const Transformer &candidate,
                                         std::span<const std::int32_t> tokens, const EvalOptions &options,
                                         Feedback *feedback = nullptr);

// log-softmax of one row of logits, in double for accuracy.
void logSoftmax(const float *logits, std::int64_t n, std::vector<double> &out);

} // namespace bitsmith::core

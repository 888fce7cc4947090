// transformer.h: the CPU forward pass of Llama-family decoders (Llama, Mistral, Qwen2):
// RMSNorm, rotary embeddings (rope_theta), grouped-query causal attention (optional sliding
// window), SwiGLU MLP, q/k/v biases, tied or untied head. Matches PyTorch `transformers` in f32.
#pragma once

#include "linear.h"
#include "model.h"

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

namespace bitsmith::core {

// Keys and values of the tokens seen so far, per layer.
struct KVCache
{
    int capacity = 0; // tokens
    int length = 0;   // tokens filled
    std::vector<std::vector<float>> keys;   // per layer: [capacity, kvHeads * headDim]
    std::vector<std::vector<float>> values; // per layer: same
    void clear() { length = 0; }
};

// The linear kernels of one block; the runtime only sees LinearKernel.
struct BlockKernels
{
    std::unique_ptr<LinearKernel> q, k, v, o, gate, up, down;
};

class Transformer
{
public:
    // Dense f32 kernels over the model's weights, on the chosen backend.
    explicit Transformer(std::shared_ptr<const Model> model, LinearBackend backend = LinearBackend::OneDnn);
    // Custom kernels (quantized, sparse): one BlockKernels per block, plus the head.
    Transformer(std::shared_ptr<const Model> model, std::vector<BlockKernels> blocks,
                std::unique_ptr<LinearKernel> head);

    const Model &model() const { return *m_model; }
    std::shared_ptr<const Model> modelPtr() const { return m_model; }
    int vocabSize() const { return m_model->config().vocabSize; }

    KVCache makeCache(int capacity) const;

    // Runs `tokens` at positions cache.length.. and appends them to the cache. On return
    // `logits` holds [tokens.size(), vocab] (or [1, vocab] for the last token when lastOnly).
    // Errors: token ids out of range, cache overflow, context beyond max_position_embeddings.
    Expected<void> forward(std::span<const std::int32_t> tokens, KVCache &cache, std::vector<float> &logits,
                           bool lastOnly = false) const;

private:
    void attention(int layer, const float *q, std::int64_t t, KVCache &cache, float *out) const;
    void rope(float *x, std::int64_t t, int heads, int startPos) const;

    std::shared_ptr<const Model> m_model;
    std::vector<BlockKernels> m_blocks;
    std::unique_ptr<LinearKernel> m_head;
    std::vector<float> m_invFreq;
};

// RMSNorm as in transformers: x * rsqrt(mean(x²) + eps) * weight, per row of `cols`.
void rmsNorm(const float *x, const float *weight, std::int64_t rows, std::int64_t cols, float eps, float *out);

} // namespace bitsmith::core

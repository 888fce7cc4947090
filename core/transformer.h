// transformer.h: the CPU forward pass of Llama-family decoders (Llama, Mistral, Qwen2, Qwen3, Gemma,
// Phi-3, and the mixture-of-experts Mixtral and Qwen3-MoE: router softmax, top-k, renormalized
// as each defines, the routed tokens of each expert gathered and run as one batch):
// RMSNorm, rotary embeddings (every rope type of rope.h), grouped-query causal attention
// (optional sliding window, per layer), q/k RMSNorm per head (Qwen3), SwiGLU MLP, q/k/v biases,
// tied or untied head. Matches PyTorch `transformers` in f32.
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
struct ExpertKernels
{
    std::unique_ptr<LinearKernel> gate, up, down;
};

struct BlockKernels
{
    std::unique_ptr<LinearKernel> q, k, v, o, gate, up, down; // gate/up/down null on MoE layers
    std::unique_ptr<LinearKernel> router;                      // MoE layers
    std::vector<ExpertKernels> experts;                        // MoE layers
};

// Sees the input of each distinct linear during a forward pass (calibration statistics, GPTQ
// Hessians, activation norms). `role` names the input: LinearQ for the input shared by q/k/v,
// LinearO, LinearGate for the input shared by gate/up, LinearDown. Returning false stops the
// block right there (calibration that only needs one input saves the rest of the block; the
// block's output is then not computed).
class LinearInputHook
{
public:
    virtual ~LinearInputHook() = default;
    virtual bool onLinearInput(int block, WeightRole role, const float *x, std::int64_t rows, std::int64_t cols) = 0;
    // MoE layers: the input of expert `expert`'s gate/up (role LinearGate) or down (LinearDown),
    // the rows of the tokens routed to it (rows may be 0). On MoE layers onLinearInput() sees
    // LinearGate once, for the normalized input the router reads.
    virtual bool onExpertInput(int /*block*/, int /*expert*/, WeightRole /*role*/, const float * /*x*/, std::int64_t /*rows*/,
                               std::int64_t /*cols*/)
    {
        return true;
    }
    // Whether onExpertInput() should see every token for this expert (as if all were routed to
    // it: calibration of experts the router starves); the output still uses the routed ones.
    virtual bool wantsAllTokens(int /*block*/, int /*expert*/) const { return false; }
};

class Transformer
{
public:
    // Kernels over the model's weights: quantized layers on their quantized kernels (unless
    // quantizedKernels is false: then everything runs dense f32 on the dequantized values),
    // pruned dense layers (2:4, or >= 70% zeros) on sparse kernels with the oneDNN backend (unless
    // quantizedKernels is false or BITSMITH_SPARSE=0; core/kernels/sparselinear.h),
    // dense ones on the chosen f32 backend.
    explicit Transformer(std::shared_ptr<const Model> model, LinearBackend backend = LinearBackend::OneDnn,
                         bool quantizedKernels = true);
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
                           bool lastOnly = false, LinearInputHook *hook = nullptr) const;

    // The pieces of forward(), for calibration that runs block by block.
    // embed: x [tokens, hidden] from ids (ids must be valid).
    void embed(std::span<const std::int32_t> tokens, float *x) const;
    // Runs block `layer` in place on x [t, hidden] at positions cache.length.. (writing the
    // block's keys/values into the cache; cache.length is NOT advanced: the caller does that
    // once all blocks have run).
    void runBlock(int layer, float *x, std::int64_t t, KVCache &cache, LinearInputHook *hook = nullptr) const;
    // The two halves of runBlock: attention (x += o(attn(norm(x)))) and MLP (x += down(...)).
    // They return false when the hook stopped early. The sensitivity sweep restarts mid-block.
    bool runAttention(int layer, float *x, std::int64_t t, KVCache &cache, LinearInputHook *hook = nullptr) const;
    bool runMlp(int layer, float *x, std::int64_t t, LinearInputHook *hook = nullptr) const;
    // MoE layers: for each of the t rows of normalized input xn, the experts it is routed to and
    // their weights ([t, expertsPerToken] each), as transformers' router computes them.
    void route(int layer, const float *xn, std::int64_t t, std::vector<int> &experts, std::vector<float> &weights) const;
    // Final norm and head for `rows` rows of x: logits [rows, vocab].
    void head(const float *x, std::int64_t rows, std::vector<float> &logits) const;

private:
    void initRope();
    void attention(int layer, const float *q, std::int64_t t, KVCache &cache, float *out) const;
    void rope(float *x, std::int64_t t, int heads, int startPos, int layer) const;
    bool runMoe(int layer, const float *xn, std::int64_t t, float *out, LinearInputHook *hook) const;
    // A norm's weight as applied: the weight itself, or (1 + w) for Gemma (into scratch).
    const float *normWeight(const MatrixView &w, std::vector<float> &scratch) const;

    std::shared_ptr<const Model> m_model;
    std::vector<BlockKernels> m_blocks;
    std::unique_ptr<LinearKernel> m_head;
    std::vector<float> m_invFreq;  // within the original context
    double m_ropeScaling = 1.0;     // transformers' attention_scaling (yarn, longrope)
    std::vector<float> m_invFreqSliding; // Gemma 3's local layers (empty: as the others)
    double m_ropeScalingSliding = 1.0;
};

// RMSNorm as in transformers: x * rsqrt(mean(x²) + eps) * weight, per row of `cols`.
void rmsNorm(const float *x, const float *weight, std::int64_t rows, std::int64_t cols, float eps, float *out);

} // namespace bitsmith::core

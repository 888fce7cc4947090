// modelconfig.h: the parts of a Hugging Face config.json that the runtime needs, validated.
// Supported: LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM, Gemma2/3,
// Phi3, and the mixture-of-experts MixtralForCausalLM and Qwen3MoeForCausalLM, with every rope type
// of rope.h, in the transformers 4.x and 5.x spellings.
#pragma once

#include "error.h"
#include "rope.h"

#include <QByteArray>
#include <QString>

#include <vector>

namespace bitsmith::core {

enum class Architecture { Llama, Mistral, Qwen2, Qwen3, Gemma2, Gemma3, Phi3, Mixtral, Qwen3Moe };

enum class Activation { Silu, GeluTanh }; // the MLP gate: SwiGLU, or GeGLU with tanh-GELU (Gemma)

struct ModelConfig
{
    Architecture architecture = Architecture::Llama;
    QString architectureName; // as in config.json, e.g. "LlamaForCausalLM"
    QString modelType;        // "llama", "mistral", "qwen2"
    int vocabSize = 0;
    int hiddenSize = 0;
    int intermediateSize = 0;
    int numLayers = 0;
    int numHeads = 0;
    int numKvHeads = 0;
    int headDim = 0;
    int rotaryDim = 0; // dims of each head that rope rotates: head_dim * partial_rotary_factor (Phi)
    int ropeDim() const { return rotaryDim > 0 ? rotaryDim : headDim; }
    int maxPositions = 0;
    double ropeTheta = 10000.0;
    RopeScaling ropeScaling; // rope_scaling (4.x) / rope_parameters (5.x)
    double rmsNormEps = 1e-6;
    bool tieWordEmbeddings = false;
    bool attentionBias = false; // q/k/v biases (always on for Qwen2)
    bool outputBias = false;    // o_proj bias (Llama's attention_bias also adds it)
    bool mlpBias = false;
    bool qkNorm = false;        // RMSNorm over each head of q and k before rope (Qwen3, Gemma 3)
    // Gemma: RMSNorm weights act as (1 + w); sandwich norms (post_attention_layernorm on the
    // attention output, pre_/post_feedforward_layernorm around the MLP); embeddings times
    // sqrt(hidden); attention scaled by query_pre_attn_scalar^-1/2; tanh soft-capping.
    float normOffset = 0.0f;
    bool sandwichNorms = false;
    bool embedScale = false;
    Activation activation = Activation::Silu;
    double queryPreAttnScalar = 0.0; // 0: head_dim
    double attnSoftcap = 0.0;        // 0: none
    double finalSoftcap = 0.0;       // 0: none
    // Gemma 3: sliding layers have their own rope (rope_local_base_freq / rope_parameters
    // ["sliding_attention"]); 0 = the same rope as the others.
    double slidingRopeTheta = 0.0;
    RopeScaling slidingRopeScaling;
    int slidingWindow = 0; // 0 = none
    // Per layer: whether it attends through the sliding window (layer_types "sliding_attention",
    // or Qwen's max_window_layers rule). Empty: every layer does when slidingWindow > 0.
    std::vector<bool> slidingLayers;
    // Mixture of experts (Mixtral, Qwen3-MoE): the MLP of a MoE layer is numExperts SwiGLU
    // experts of width moeIntermediateSize and a router (softmax over the experts, the top
    // expertsPerToken kept, renormalized when normTopkProb). Qwen3-MoE keeps a dense MLP of
    // intermediateSize on the layers moeLayers says false (mlp_only_layers, decoder_sparse_step).
    int numExperts = 0; // 0: a dense model
    int expertsPerToken = 0;
    int moeIntermediateSize = 0;
    bool normTopkProb = true;
    std::vector<bool> moeLayers; // per layer, when numExperts > 0
    bool isMoe() const { return numExperts > 0; }
    bool isMoeLayer(int layer) const
    {
        return numExperts > 0 && layer >= 0 && layer < static_cast<int>(moeLayers.size()) && moeLayers[static_cast<std::size_t>(layer)];
    }
    int bosTokenId = -1;
    int eosTokenId = -1;
    QString torchDtype; // "bfloat16", "float32", ... (informational)

    // Parses and validates; errors name the file and the offending key.
    static Expected<ModelConfig> fromFile(const QString &path);
    static Expected<ModelConfig> fromJson(const QByteArray &json, const QString &pathForErrors);

    // The window of layer l: slidingWindow where that layer slides, else 0 (full attention).
    int windowOfLayer(int layer) const
    {
        if (slidingWindow <= 0)
            return 0;
        if (slidingLayers.empty())
            return slidingWindow;
        return layer >= 0 && layer < static_cast<int>(slidingLayers.size()) && slidingLayers[static_cast<std::size_t>(layer)]
                   ? slidingWindow
                   : 0;
    }
    // The longest context a forward pass accepts: max_position_embeddings, unbounded for dynamic
    // NTK scaling (made to run past it).
    int contextLimit() const;

    // Parameters of the transformer (embeddings and head included, tied head counted once).
    qint64 parameterCount() const;
};

QString architectureName(Architecture a);

} // namespace bitsmith::core

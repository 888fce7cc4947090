// modelconfig.h: the parts of a Hugging Face config.json that the runtime needs, validated.
// Supported: LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM.
#pragma once

#include "error.h"

#include <QByteArray>
#include <QString>

namespace bitsmith::core {

enum class Architecture { Llama, Mistral, Qwen2 };

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
    int maxPositions = 0;
    double ropeTheta = 10000.0;
    double rmsNormEps = 1e-6;
    bool tieWordEmbeddings = false;
    bool attentionBias = false; // q/k/v biases (always on for Qwen2)
    bool outputBias = false;    // o_proj bias (Llama's attention_bias also adds it)
    bool mlpBias = false;
    int slidingWindow = 0; // 0 = none
    int bosTokenId = -1;
    int eosTokenId = -1;
    QString torchDtype; // "bfloat16", "float32", ... (informational)

    // Parses and validates; errors name the file and the offending key.
    static Expected<ModelConfig> fromFile(const QString &path);
    static Expected<ModelConfig> fromJson(const QByteArray &json, const QString &pathForErrors);

    // Parameters of the transformer (embeddings and head included, tied head counted once).
    qint64 parameterCount() const;
};

QString architectureName(Architecture a);

} // namespace bitsmith::core

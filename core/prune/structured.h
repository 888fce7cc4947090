// structured.h: structured pruning of Llama-family decoders — whole attention heads and MLP
// intermediate neurons are removed and the model is rewritten physically smaller, as a normal
// Hugging Face folder (safetensors in the source dtype + config.json with the new
// num_attention_heads / num_key_value_heads / intermediate_size and an explicit head_dim +
// tokenizer files), which every loader (Bitsmith's, transformers') runs as it is.
//
// Importance (activation-based, over calibration tokens of the original model):
//   MLP neuron j:  mean |a_j| · ||W_down[:, j]||₂      (a = silu(gate(x)) · up(x), down's input)
//   query head h:  sqrt(Σ_{j ∈ h} mean a_j²) · ||W_o[:, h]||_F   (a = the attention output, o's input)
// Grouped-query attention stays consistent: either the same number of query heads is removed from
// every KV group (the lowest-scoring of each group), or whole KV groups (with all their query
// heads, by the sum of their scores) — whichever comes closer to the requested fraction (query heads
// first on ties). At least one head and one neuron always remain. The same counts are removed in
// every block (the config has one intermediate_size and one head count).
#pragma once

#include "core/error.h"
#include "core/feedback.h"
#include "core/model.h"

#include <QJsonObject>
#include <QString>

#include <cstdint>
#include <memory>
#include <vector>

namespace bitsmith::core {

struct StructuredImportance
{
    std::vector<std::vector<double>> heads;   // per block: numHeads scores
    std::vector<std::vector<double>> neurons; // per block: intermediateSize scores
    std::int64_t tokens = 0;
};

// Runs the calibration sequences through the (dense) model and scores every head and neuron.
Expected<StructuredImportance> structuredImportance(std::shared_ptr<const Model> model,
                                                    const std::vector<std::vector<std::int32_t>> &calibration,
                                                    Feedback *feedback = nullptr);

struct StructuredPlan
{
    int headsPerKvGroup = 0;                 // query heads per KV group after pruning
    int kvHeads = 0;                         // KV heads after pruning
    std::vector<std::vector<int>> keptHeads; // per block: kept query heads (original indices, ascending)
    std::vector<std::vector<int>> keptKvHeads;
    std::vector<std::vector<int>> keptNeurons;
    double headFraction = 0.0;   // fraction of query heads removed
    double neuronFraction = 0.0; // fraction of MLP neurons removed
};

// Chooses what to remove. headFraction and mlpFraction in [0, 1); errors name "heads" / "mlp".
Expected<StructuredPlan> planStructuredPruning(const Model &model, const StructuredImportance &importance,
                                               double headFraction, double mlpFraction);

// Writes the smaller model to outDir (atomically: a temporary folder renamed into place), with a
// report.json listing the kept units. The model must be dense (not a compressed folder).
Expected<QJsonObject> writeStructuredModel(const Model &model, const StructuredPlan &plan, const QString &outDir);

} // namespace bitsmith::core

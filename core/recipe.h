// recipe.h: the single source of truth of a compression configuration. A versioned JSON
// document: defaults, then per-layer entries (by exact name or by pattern, applied in order, the
// later overriding the earlier) giving technique, bits, group size, symmetry and parameters; the
// calibration data; and the model it was made for (architecture and a hash of the weights).
//
//   {
//     "schemaVersion": 1,
//     "model": {"architecture": "LlamaForCausalLM", "weightsHash": "sha256:..."},
//     "defaults": {"technique": "gptq", "bits": 4, "groupSize": 128, "symmetric": false,
//                  "parameters": {"actOrder": true}},
//     "layers": [
//       {"match": "model.layers.*.mlp.down_proj", "bits": 8},
//       {"name": "model.layers.0.self_attn.q_proj", "technique": "rtn", "bits": 6, "groupSize": 0},
//       {"match": "model.layers.7.*", "skip": true},
//       {"match": "model.layers.*.mlp.*", "technique": "wanda", "sparsity": 0.5, "pattern": "2:4"}
//     ],
//     "calibration": {"text": "calib.txt", "sequences": 128, "length": 512, "seed": 0}
//   }
//
// Layer names are the linear modules' names without ".weight" ("lm_head" for the head). By
// default every linear inside the transformer blocks is targeted; the head only if an entry names it.
// groupSize: > 0 columns per group, 0 per output channel, -1 per tensor.
// sparsity: fraction of weights a pruning technique removes (0 <= s < 1); pattern: "unstructured"
// or "N:M" (keep at most N of every M consecutive inputs). Both are optional (schemaVersion 1
// recipes without them load unchanged) and are ignored by quantization techniques.
#pragma once

#include "core/error.h"
#include "core/model.h"
#include "core/sdk/technique.h"

#include <QByteArray>
#include <QString>

#include <optional>
#include <vector>

namespace bitsmith::core {

class TechniqueRegistry;

constexpr int kRecipeSchemaVersion = 1;

struct RecipeEntry
{
    QString name;  // exact layer name, or
    QString match; // glob pattern ('*' and '?'), or
    QString regex; // regular expression (whole-name match)
    std::optional<QString> technique;
    std::optional<int> bits;
    std::optional<int> groupSize;
    std::optional<bool> symmetric;
    std::optional<double> sparsity;
    std::optional<SparsityPattern> pattern;
    bool skip = false; // keep the layer dense
    ParameterValues parameters;
    QString selector() const; // what the entry matches on, for messages
};

struct CalibrationSpec
{
    QString text;      // calibration text file ("" = none given)
    int sequences = 128;
    int length = 0;    // tokens per sequence; 0 = the model's context
    quint64 seed = 0;
};

struct Recipe
{
    int schemaVersion = kRecipeSchemaVersion;
    QString modelArchitecture;
    QString modelWeightsHash;
    QString defaultTechnique = QStringLiteral("rtn");
    QuantFormat defaultFormat;
    ParameterValues defaultParameters;
    double defaultSparsity = 0.0;
    SparsityPattern defaultPattern;
    std::vector<RecipeEntry> layers;
    CalibrationSpec calibration;

    static Expected<Recipe> fromJson(const QByteArray &json, const QString &pathForErrors);
    static Expected<Recipe> fromFile(const QString &path);
    QByteArray toJson() const;
    // Atomic write (QSaveFile).
    Expected<void> save(const QString &path) const;
};

// One targeted layer with its resolved settings.
struct ResolvedLayer
{
    QString name; // "model.layers.0.self_attn.q_proj"
    QString tensor; // "model.layers.0.self_attn.q_proj.weight"
    WeightRole role = WeightRole::LinearQ;
    int block = -1;
    int expert = -1; // MoE: the expert of a gate/up/down, -1 otherwise
    std::int64_t rows = 0;
    std::int64_t cols = 0;
    LayerSettings settings;
};

// The compressible linear layers of a model, in execution order.
std::vector<ResolvedLayer> linearLayers(const Model &model);

// Applies the recipe to the model: every entry must match at least one layer, techniques must
// exist, and each layer's settings must pass its technique's schema and validate(). Errors name
// the entry/layer and the parameter. Layers that end up skipped are not returned.
Expected<std::vector<ResolvedLayer>> resolveRecipe(const Recipe &recipe, const Model &model,
                                                   const TechniqueRegistry &registry);

} // namespace bitsmith::core

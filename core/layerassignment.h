// layerassignment.h: a recipe seen as "one setting per compressible layer", the way an editor
// (the GUI's bit-width table, the allocator) needs it: resolving a recipe to per-layer settings
// without loading any plugin, writing one layer's setting back into a recipe, building a recipe
// from per-layer choices, and the storage size a setting gives a layer.
//
// Resolution follows resolveRecipe() (core/recipe.h): defaults first, then the entries in
// order, exact names before patterns only by position; the head is targeted only when an entry
// names it. Unlike resolveRecipe() it never fails: an entry that matches nothing is ignored and
// no technique is validated (that happens when the recipe is compressed).
#pragma once

#include "core/quant/quantizedtensor.h" // QuantFormat
#include "core/recipe.h"                // Recipe, RecipeEntry
#include "core/sensitivity.h"           // SensitivitySetting

#include <QString>

#include <cstdint>
#include <vector>

namespace bitsmith::core {

// One layer's setting: dense (left as stored), or a technique and format.
struct LayerSetting
{
    bool dense = true;
    QString technique; // "rtn", "gptq", "wanda", ... when not dense
    QuantFormat format;
    double sparsity = 0.0;   // pruning: unstructured fraction removed
    SparsityPattern pattern; // pruning: N:M

    // "dense", "rtn:w4g128", "gptq:w3g64", "rtn:w8" (per channel), "rtn:w4t" (per tensor);
    // the same spelling as SensitivitySetting::label() so the two compare as text.
    QString label() const;
    bool operator==(const LayerSetting &o) const
    {
        return dense == o.dense
               && (dense || (technique == o.technique && format == o.format && sparsity == o.sparsity && pattern == o.pattern));
    }
    static LayerSetting fromSensitivity(const SensitivitySetting &s) { return {false, s.technique, s.format, s.sparsity, s.pattern}; }
    SensitivitySetting toSensitivity() const { return {technique, format, sparsity, pattern}; }
};

// A layer the assignment is about (name without ".weight", shape, whether it is the head).
struct AssignableLayer
{
    QString name;
    std::int64_t rows = 0;
    std::int64_t cols = 0;
    bool isHead = false;
    std::int64_t parameters() const { return rows * cols; }
};

// The compressible linear layers of a model in execution order (core::linearLayers()).
std::vector<AssignableLayer> assignableLayers(const Model &model);

// Per layer (same order as `layers`), the setting the recipe gives it.
std::vector<LayerSetting> resolveAssignment(const Recipe &recipe, const std::vector<AssignableLayer> &layers);

// A copy of `recipe` in which layer `name` gets `setting`: an exact-name entry for that layer is
// replaced (or appended, so it overrides every pattern before it).
Recipe withLayerSetting(const Recipe &recipe, const QString &name, const LayerSetting &setting);

// A recipe giving every layer of `layers` the setting at the same index (one exact-name entry
// each), keeping `base`'s defaults, model reference and calibration.
Recipe recipeFromAssignment(const Recipe &base, const std::vector<AssignableLayer> &layers,
                            const std::vector<LayerSetting> &settings);

// Bytes a layer takes under `setting` as Bitsmith stores it (QuantizedTensor::storageBits: packed
// codes, fp16 scales, packed zeros unless symmetric; no act-order index). Dense: `denseBytes`.
double layerBytes(const AssignableLayer &layer, const LayerSetting &setting, double denseBytes);

} // namespace bitsmith::core

// compression.h: the engine that applies a recipe to a model. It walks the blocks in order; for
// each group of linears sharing an input it gathers calibration statistics (when a technique
// asks for them) on the outputs of the blocks already compressed, lets each technique compress
// its layers, writes the dequantized result back into a working copy of the model, and moves the
// calibration activations through the compressed block (sequential calibration, as GPTQ does).
// The same calls serve the CLI's `compress` and the GUI.
#pragma once

#include "core/error.h"
#include "core/feedback.h"
#include "core/model.h"
#include "core/recipe.h"

#include <QJsonObject>
#include <QString>

#include <cstdint>
#include <memory>
#include <set>
#include <vector>

namespace bitsmith::core {

class TechniqueRegistry;

struct CompressedLayerReport
{
    QString name;
    QString technique;
    QString format; // "q4 g128"
    double bitsPerWeight = 0.0;
    std::int64_t parameters = 0;
    std::int64_t bytes = 0;
    double relativeError = 0.0; // ‖W − W'‖² / ‖W‖²
    double sparsity = 0.0;      // fraction of exact zeros in the result
    QString pattern;            // pruned layers: "unstructured", "2:4", ...; empty when not pruned
};

struct CompressionResult
{
    std::shared_ptr<Model> model; // the compressed model (mutable copy; quantized layers recorded)
    Recipe recipe;
    std::vector<CompressedLayerReport> layers;
    std::set<QString> modifiedTensors; // dense tensors changed by techniques (e.g. folded norms)
    std::vector<QString> warnings;     // e.g. MoE experts that received too few calibration tokens
    std::int64_t calibrationSequences = 0;
    std::int64_t calibrationTokens = 0;
    double seconds = 0.0;
    std::int64_t originalBytes = 0;
    std::int64_t compressedBytes = 0;
    double effectiveBitsPerWeight = 0.0; // over the compressed layers
    double modelBitsPerWeight = 0.0;     // over all parameters
    double linearSparsity = 0.0;         // fraction of zeros over all linear weights of the result
};

// `calibration` may be empty when no technique of the recipe needs calibration; otherwise it
// must hold at least one sequence.
struct CompressionOptions
{
    // Where packed results go instead of memory (a file the caller removes once the result is
    // written); empty: kept in memory.
    QString spillFile;
    // Bytes the job may allocate (the user's --max-memory); 0: what the machine has available.
    // Calibration activations beyond a quarter of it go to a temporary file in tempFolder.
    std::int64_t maxMemory = 0;
    // Where temporary files go; empty: the system's temporary folder.
    QString tempFolder;
};

// The result shares the source's mapped weights: the source must outlive it. Only one block is
// held in f32 at a time. Fails with ErrorCode::OutOfMemory before starting when what the job must
// hold in memory (estimateCompressionMemory() less what is spilled) is more than is available.
Expected<CompressionResult> compressModel(const Model &source, const Recipe &recipe, const TechniqueRegistry &registry,
                                          const std::vector<std::vector<std::int32_t>> &calibration,
                                          Feedback *feedback = nullptr, const CompressionOptions &options = {});

// Bytes compressModel() will allocate (besides the mapped weights) for this recipe and calibration.
Expected<std::int64_t> estimateCompressionMemory(const Model &source, const Recipe &recipe, const TechniqueRegistry &registry,
                                                 const std::vector<std::vector<std::int32_t>> &calibration);

// Whether any technique the recipe uses on this model needs calibration data.
Expected<bool> recipeNeedsCalibration(const Recipe &recipe, const Model &model, const TechniqueRegistry &registry);

// Writes a compressed model folder that Model::load reads directly: config.json (with a
// "quantization_config" of quant_method "bitsmith"), model.safetensors (dense tensors as stored,
// changed ones in f32, pruned linears in their stored dtype (zeros included), quantized linears as <name>.qweight / .scales / .qzeros / .g_idx),
// tokenizer files, recipe.json and report.json. Written to a temporary folder and renamed into
// place, so a failure never leaves a half-written model.
Expected<void> writeCompressedModel(const CompressionResult &result, const Model &source, const QString &outDir,
                                    Feedback *feedback = nullptr);

// The report written as report.json (sizes, bits per weight, time, per-layer errors).
QJsonObject compressionReportJson(const CompressionResult &result, const Model &source);

} // namespace bitsmith::core

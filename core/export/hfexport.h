// hfexport.h: Hugging Face folders for deployment: a dense checkpoint (any model: dense,
// compressed -> dequantized, or read from GGUF) and the GPTQ checkpoint layout of a compressed
// model; and the recipe as llm-compressor-style YAML.
//
// GPTQ layout (as AutoGPTQ / GPTQModel / transformers read it), for a linear [out, in]:
//   qweight  int32 [in * bits / 32, out]   codes packed along the input dimension: for each output
//            column, the codes of inputs 0, 1, 2, ... form a little-endian bit stream, `bits`
//            bits each, cut into int32 words (for 2/4/8 bits: 32/bits codes per word, the first in
//            the lowest bits; for 3 bits the stream crosses word boundaries as AutoGPTQ's does)
//   qzeros   int32 [groups, out * bits / 32]  zero points packed the same way along outputs
//   scales   fp16  [groups, out]
//   g_idx    int32 [in]                     group of each input (act-order permutes it)
// Zero-point convention: checkpoint_format "gptq" (AutoGPTQ v1) stores zero - 1 and loaders add
// 1 back; it cannot hold a zero of 0, so when any layer has one the whole checkpoint is written as
// "gptq_v2" (GPTQModel), which stores the zero itself. Dequantization: w = scale * (q - zero).
// Mixed formats: the most common one is the base `bits`/`group_size`; layers that differ get a
// GPTQModel `dynamic` entry ("+:^name$": {bits, group_size, sym, desc_act}), dense layers a
// "-:^name$" entry.
#pragma once

#include "core/error.h"
#include "core/feedback.h"
#include "core/model.h"
#include "core/recipe.h"
#include "core/safetensors.h"

#include <QByteArray>
#include <QJsonObject>
#include <QString>

#include <cstdint>
#include <vector>

namespace bitsmith::core {

// Writes config.json (without quantization_config), the weights (model.safetensors, or shards of at
// most maxShardBytes with model.safetensors.index.json; streamed tensor by tensor) and the tokenizer files.
// Weights keep their stored float dtype; quantized layers and GGUF sources are written as F32
// (their dequantized values exactly). Returns a summary (tensors, bytes, dtypes).
Expected<QJsonObject> exportHfDense(const Model &model, const QString &outDir, Feedback *feedback = nullptr,
                                    std::int64_t maxShardBytes = kDefaultShardBytes);

// Writes the GPTQ layout for every quantized layer (the rest dense, as stored). Errors: W8A8
// layers, bits other than 2, 3, 4, 8, or input sizes the packing cannot split.
Expected<QJsonObject> exportHfGptq(const Model &model, const QString &outDir, Feedback *feedback = nullptr,
                                   std::int64_t maxShardBytes = kDefaultShardBytes);

// The packing above, for tests and tools: qweight [in*bits/32, out] and qzeros [groups, out*bits/32]
// (zeros stored minus `zeroOffset`: 1 for "gptq", 0 for "gptq_v2"), row-major.
std::vector<std::int32_t> packGptqWeight(const QuantizedTensor &q);
std::vector<std::int32_t> packGptqZeros(const QuantizedTensor &q, int zeroOffset);

// The recipe as llm-compressor users write it: one modifier per technique (GPTQModifier,
// QuantizationModifier, AWQModifier, SmoothQuantModifier) with config_groups of `targets`
// (Linear, or "re:" regexes for layer entries) and `weights` {num_bits, type, symmetric,
// strategy, group_size}, and `ignore` for skipped layers.
QByteArray recipeToYaml(const Recipe &recipe);

} // namespace bitsmith::core

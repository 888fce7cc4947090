// ggufmodel.h: Bitsmith models to and from GGUF files as llama.cpp loads them.
//
// Export writes the architecture metadata llama.cpp expects (`llama` for Llama/Mistral, `qwen2`),
// the tokenizer (byte-level BPE as the `gpt2` model with merges and the pre-tokenizer name that
// matches tokenizer.json's pre-tokenizer; the whole tokenizer.json also goes to
// `tokenizer.huggingface.json`), and each weight under llama.cpp's tensor names:
//   model.embed_tokens -> token_embd, layers.N.self_attn.{q,k,v,o}_proj -> blk.N.attn_{q,k,v,output},
//   input_layernorm -> blk.N.attn_norm, post_attention_layernorm -> blk.N.ffn_norm,
//   mlp.{gate,up,down}_proj -> blk.N.ffn_{gate,up,down}, model.norm -> output_norm, lm_head -> output.
// For `llama`, q/k rows are permuted from Hugging Face's rotate-half layout to the interleaved
// pairs llama.cpp's rope expects (as llama.cpp's converter does); import undoes it.
//
// Types: a quantized layer whose format a 32-element block type holds (g32, no act-order:
// symmetric 4/5/8-bit -> Q4_0/Q5_0/Q8_0, asymmetric 4/5-bit -> Q4_1/Q5_1) is written from
// Bitsmith's own codes and scales; any other quantized layer is requantized from its dequantized
// values with the closest k-quant (bits 2..6 -> Q2_K..Q6_K, 7..8 -> Q8_0), and the report says so.
// Dense matrices keep their stored float type unless a type is given; norms and biases are F32.
#pragma once

#include "core/error.h"
#include "core/feedback.h"
#include "core/gguf/ggmltype.h"
#include "core/model.h"

#include <QJsonObject>
#include <QString>
#include <QStringList>

#include <memory>
#include <optional>
#include <vector>

namespace bitsmith::core::gguf {

struct GgufExportOptions
{
    // Type of the dense 2-D weights (embedding, head, unquantized linears); nullopt keeps the
    // stored float type (BF16 stays BF16, F16 F16, F32 F32).
    std::optional<GgmlType> denseType;
    // Requantize Q4_1/Q5_1 layers whose minimum -scale*zero is not an fp16 value (instead of
    // keeping the codes and rounding the minimum to fp16).
    bool strictExact = false;
};

struct GgufTensorExport
{
    QString name;   // GGUF name, e.g. "blk.0.attn_q.weight"
    QString source; // checkpoint name
    GgmlType type = GgmlType::F32;
    QString kind;   // "exact", "rounded-min", "requantized", "dense", "f32"
    QString how;    // "exact codes", "codes kept, min rounded to fp16", "requantized (q3 g64 -> Q3_K)", "dense", ...
    std::int64_t bytes = 0;
    std::int64_t groups = 0;
    std::int64_t inexactGroups = 0;
    double maxAbsDeviation = 0.0; // largest |GGUF value - Bitsmith value| where codes were kept
};

struct GgufExportReport
{
    QString path;
    QString architecture; // "llama" / "qwen2"
    QString preTokenizer; // tokenizer.ggml.pre
    std::int64_t fileBytes = 0;
    std::vector<GgufTensorExport> tensors;
    // llama-quantize overrides reproducing the types (one `REGEX=type` per line, usable with
    // --tensor-type or --tensor-type-file).
    QStringList tensorTypeOverrides;
    QJsonObject toJson() const;
};

// Writes `model` to `path` (atomically). Errors name the tensor; unsupported tokenizers
// (SentencePiece) and shapes (rows not a multiple of 32) are Unsupported errors.
Expected<GgufExportReport> exportGguf(const Model &model, const QString &path, const GgufExportOptions &options = {},
                                      Feedback *feedback = nullptr);

// Reads a GGUF file written by Bitsmith or llama.cpp's converter (architectures llama, qwen2)
// into a Model: every tensor dequantized to f32 (q/k un-permuted); 32-element block tensors of
// Bitsmith's form (see decodeToQuantized) become quantized layers that run on Bitsmith's
// kernels. The tokenizer comes from tokenizer.huggingface.json, or is rebuilt from the gpt2 vocab
// and merges; info shows each weight's GGUF type.
Expected<std::shared_ptr<Model>> loadGgufModel(const QString &path, Feedback *feedback = nullptr);

// The llama.cpp pre-tokenizer name (tokenizer.ggml.pre) for a tokenizer.json's pre_tokenizer:
// "gpt-2" for the plain ByteLevel one, "llama-bpe" for Llama 3's split regex, "qwen2" for
// Qwen2's; "default" with `known` false otherwise.
QString preTokenizerName(const QByteArray &tokenizerJson, bool *known = nullptr);

// The tokenizer.json text of a model: its folder's file, or a GGUF file's
// tokenizer.huggingface.json (empty if none).
QByteArray tokenizerJsonFor(const Model &model);

// llama.cpp's name for a checkpoint tensor name (empty if it has none).
QString ggufTensorName(const QString &hfName);

} // namespace bitsmith::core::gguf

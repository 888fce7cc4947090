// model.h: a Hugging Face causal-LM folder loaded for inspection and execution:
// config.json + safetensors weights (memory-mapped; f32 used in place, f16/bf16 widened to f32
// exactly) + tokenizer.json (optional). Every weight is checked against the config's shapes.
#pragma once

#include "dtype.h"
#include "error.h"
#include "feedback.h"
#include "modelconfig.h"
#include "safetensors.h"
#include "tokenizer.h"
#include "quant/quantizedtensor.h"

#include <QString>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <vector>

namespace bitsmith::core {

// What a weight tensor is for; Linear* roles are the compressible matrices.
enum class WeightRole {
    Embedding,
    AttnNorm,
    LinearQ,
    LinearK,
    LinearV,
    LinearO,
    BiasQ,
    BiasK,
    BiasV,
    BiasO,
    MlpNorm,
    LinearGate,
    LinearUp,
    LinearDown,
    BiasGate,
    BiasUp,
    BiasDown,
    FinalNorm,
    LmHead,
};

const char *weightRoleName(WeightRole r);
// "q4 g128", "q3 g64 sym", "q8 per-channel", "w8a8"
QString quantFormatName(const QuantFormat &format, Execution execution); // "attn.q", "mlp.gate", "embedding", ...
bool isLinearRole(WeightRole r);

struct WeightInfo
{
    QString name;    // tensor name in the checkpoint, e.g. "model.layers.0.self_attn.q_proj.weight"
    WeightRole role = WeightRole::Embedding;
    int block = -1;  // transformer block index, -1 for embeddings / final norm / head
    std::vector<std::int64_t> shape;
    DType storedType = DType::F32;
    std::int64_t parameters = 0;
    std::int64_t storedBytes = 0; // as stored: packed codes + scales + zeros for quantized layers
    QString format;               // "BF16", "F32", or e.g. "q4 g128", "q3 g64 sym", "w8a8"
    double bitsPerWeight = 0.0;   // storedBytes * 8 / parameters
    double sparsity = 0.0;        // fraction of exact zeros (linear weights; 0 for the others)
};

// A linear layer stored quantized (a compressed model folder). The Model also keeps its
// dequantized f32 values, so every f32 consumer (views, statistics) keeps working.
struct QuantizedLayer
{
    QString tensor; // "model.layers.0.self_attn.q_proj.weight"
    QuantizedTensor weights;
    Execution execution = Execution::WeightOnly;
};

// A float32 row-major matrix (vectors have rows == 1). Points into the mapped file or into a
// buffer owned by the Model.
struct MatrixView
{
    const float *data = nullptr;
    std::int64_t rows = 0;
    std::int64_t cols = 0;
    bool empty() const { return data == nullptr; }
};

struct BlockWeights
{
    MatrixView attnNorm, q, k, v, o, qBias, kBias, vBias, oBias;
    MatrixView mlpNorm, gate, up, down, gateBias, upBias, downBias;
};

// A weight given by value (a model read from a GGUF file): f32 values in row-major order of
// `shape`, with what it was stored as, and optionally the quantized form the runtime should use.
struct InMemoryTensor
{
    QString name; // Hugging Face checkpoint name, e.g. "model.layers.0.self_attn.q_proj.weight"
    std::vector<std::int64_t> shape;
    std::vector<float> values;
    DType storedType = DType::F32;
    std::int64_t storedBytes = 0;
    QString format; // shown by info, e.g. "Q4_K"
    std::optional<QuantizedTensor> quantized;
};

class Model
{
public:
    // Loads a model folder, or a .gguf file (see gguf/ggufmodel.h). A bare "default" (or empty
    // string) means the bundled model.
    // Progress goes to `feedback` (may be null); cancellation returns ErrorCode::Cancelled.
    static Expected<std::shared_ptr<Model>> load(const QString &folderOrName, Feedback *feedback = nullptr);

    // A model from tensors given by value (checked against `config` exactly as a folder's
    // checkpoint is). `source` names it in messages (e.g. the .gguf path).
    static Expected<std::shared_ptr<Model>> fromTensors(const QString &source, const ModelConfig &config,
                                                        std::shared_ptr<const Tokenizer> tokenizer,
                                                        std::vector<InMemoryTensor> tensors, Feedback *feedback = nullptr);

    // The bundled default model's folder (resources/models/default, found next to the
    // executable's install prefix or in the source tree).
    static QString defaultModelFolder();
    // Maps "default" to defaultModelFolder(); returns other paths unchanged.
    static QString resolveFolder(const QString &folderOrName);

    const QString &folder() const { return m_folder; }
    const ModelConfig &config() const { return m_config; }
    // null when the folder has no tokenizer.json
    std::shared_ptr<const Tokenizer> tokenizer() const { return m_tokenizer; }

    const std::vector<WeightInfo> &weights() const { return m_weights; }
    std::int64_t totalParameters() const;
    std::int64_t totalStoredBytes() const;
    // Fraction of exact zeros over all linear weights (the compressible matrices).
    double linearSparsity() const;

    // Execution views.
    const MatrixView &embedding() const { return m_embedding; }
    const MatrixView &finalNorm() const { return m_finalNorm; }
    const MatrixView &lmHead() const { return m_lmHead; } // the embedding when tied
    const std::vector<BlockWeights> &blocks() const { return m_blocks; }
    // The f32 view of any weight by checkpoint name (empty view if unknown).
    MatrixView weight(const QString &name) const;

    // The quantized form of a linear weight (by tensor name), or null if it is dense.
    const QuantizedLayer *quantizedLayer(const QString &tensorName) const;
    const std::vector<QuantizedLayer> &quantizedLayers() const { return m_quantized; }

    // A copy whose every weight is an owned f32 buffer that can be edited in place (compression
    // works on such a copy; kernels built over it see the edits). Quantized layers stay recorded.
    std::shared_ptr<Model> cloneMutable() const;
    bool isMutable() const { return m_mutable; }
    // Writable data of a weight of a mutable model (null otherwise or if unknown).
    float *mutableWeight(const QString &name);
    // Records a quantized form for a linear weight of a mutable model and writes its dequantized
    // values into the f32 weight (so the model computes what the quantized layer computes).
    Expected<void> setQuantized(const QString &tensorName, QuantizedTensor weights, Execution execution);
    // Records a linear weight of a mutable model as pruned: writes `weights` (rows * cols, zeros
    // where pruned) into it, rounded to the tensor's stored dtype (bf16/f16 checkpoints keep their
    // precision, so the folder written later holds exactly these values), and updates its sparsity.
    Expected<void> setPruned(const QString &tensorName, std::span<const float> weights);
    // Whether a linear weight was pruned in this session (setPruned).
    bool isPruned(const QString &tensorName) const { return m_pruned.count(tensorName) > 0; }

    // The checkpoint's tensors as stored (memory-mapped).
    const SafetensorsCollection &files() const { return *m_files; }

    // SHA-256 of all weight bytes as stored, "sha256:<hex>" (computed once).
    QString weightsHash() const;

private:
    Model() = default;
    Expected<MatrixView> bind(const QString &name, WeightRole role, int block, std::vector<std::int64_t> shape,
                              bool optional);
    Expected<MatrixView> bindInMemory(const QString &name, WeightRole role, int block, std::vector<std::int64_t> shape,
                                      bool optional);
    Expected<void> bindAll(Feedback *feedback);
    Expected<MatrixView> bindQuantized(const QString &name, WeightRole role, int block,
                                       const std::vector<std::int64_t> &shape);
    Expected<void> readQuantizationConfig();

    struct StoredQuantization
    {
        QuantFormat format;
        bool actOrder = false;
        Execution execution = Execution::WeightOnly;
    };
    std::map<QString, StoredQuantization> m_storedQuantization; // by tensor name
    std::map<QString, InMemoryTensor> m_inMemory; // fromTensors() only, emptied once bound
    std::set<QString> m_auxiliaryTensors; // .qweight/.scales/... consumed by quantized layers

    QString m_folder;
    ModelConfig m_config;
    std::shared_ptr<const Tokenizer> m_tokenizer;
    std::shared_ptr<SafetensorsCollection> m_files;
    std::vector<WeightInfo> m_weights;
    std::vector<std::unique_ptr<float[]>> m_owned; // widened f16/bf16 (or misaligned f32) data
    std::vector<std::pair<QString, MatrixView>> m_views;
    MatrixView m_embedding, m_finalNorm, m_lmHead;
    std::vector<BlockWeights> m_blocks;
    std::vector<QuantizedLayer> m_quantized;
    std::set<QString> m_pruned;
    bool m_mutable = false;
    mutable QString m_hash;
};

} // namespace bitsmith::core

// model.h: a Hugging Face causal-LM folder loaded for inspection and execution:
// config.json + safetensors weights (memory-mapped and used in place in their stored type; f32 only
// on demand, tensor by tensor) + tokenizer.json (optional). Every weight is checked against the
// config's shapes. Opening reads headers only; statistics that need the data (sparsity) are
// computed at once for small models and on request (computeStatistics) for large ones.
#pragma once

#include "dtype.h"
#include "error.h"
#include "feedback.h"
#include "modelconfig.h"
#include "safetensors.h"
#include "tokenizer.h"
#include "quant/quantizedtensor.h"
#include "kernels/packedweights.h"

#include <QString>

#include <cstdint>
#include <atomic>
#include <functional>
#include <mutex>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <unordered_map>
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
    QNorm, // Qwen3: RMSNorm weight over each query head
    KNorm, // and each key head
    PostAttnNorm, // Gemma: RMSNorm of the attention output (post_attention_layernorm)
    PostMlpNorm,  // Gemma: RMSNorm of the MLP output (post_feedforward_layernorm)
    Router,       // MoE: the router's [experts, hidden] matrix (kept as stored; not compressed)
};

const char *weightRoleName(WeightRole r);
// MoE checkpoint names: the router of block `block` ("model.layers.3.block_sparse_moe.gate.weight"
// for Mixtral, "model.layers.3.mlp.gate.weight" for Qwen3-MoE) and the gate/up/down of an expert
// ("...experts.5.w1.weight" / "...experts.5.gate_proj.weight"; role LinearGate, LinearUp or
// LinearDown).
QString routerTensorName(const ModelConfig &config, int block);
QString expertTensorName(const ModelConfig &config, int block, int expert, WeightRole role);
// "q4 g128", "q3 g64 sym", "q8 per-channel", "w8a8"
QString quantFormatName(const QuantFormat &format, Execution execution); // "attn.q", "mlp.gate", "embedding", ...
bool isLinearRole(WeightRole r);

struct WeightInfo
{
    QString name;    // tensor name in the checkpoint, e.g. "model.layers.0.self_attn.q_proj.weight"
    WeightRole role = WeightRole::Embedding;
    int block = -1;  // transformer block index, -1 for embeddings / final norm / head
    int expert = -1; // MoE: the expert a gate/up/down belongs to, -1 otherwise
    std::vector<std::int64_t> shape;
    DType storedType = DType::F32;
    std::int64_t parameters = 0;
    std::int64_t storedBytes = 0; // as stored: packed codes + scales + zeros for quantized layers
    QString format;               // "BF16", "F32", or e.g. "q4 g128", "q3 g64 sym", "w8a8"
    double bitsPerWeight = 0.0;   // storedBytes * 8 / parameters
    double sparsity = 0.0;        // fraction of exact zeros (linear weights; 0 for the others); -1 = not computed yet
    // A part of a fused checkpoint tensor (Phi-3's qkv_proj / gate_up_proj are shown, compressed
    // and recorded as q/k/v and gate/up): the fused tensor's name and the part's first row there.
    // Empty for ordinary tensors. Hugging Face export writes the parts fused again.
    QString fusedName;
    std::int64_t fusedRowOffset = 0;
};

// A linear layer stored quantized (a compressed model folder, a GGUF block format, or the result
// of a technique). Held packed — in place in the mapped file where possible — never as f32.
struct QuantizedLayer
{
    QString tensor; // "model.layers.0.self_attn.q_proj.weight"
    std::shared_ptr<const PackedWeights> packed;
    Execution execution = Execution::WeightOnly;

    const QuantFormat &format() const { return packed->format(); }
    bool actOrder() const { return packed->actOrder(); }
    // The codes one per byte (a copy: for exporters and small consumers, one layer at a time).
    QuantizedTensor unpacked() const { return packed->unpack(); }
};

// One weight as the model holds it: its stored elements (in the mapped file, or owned), or a
// function that produces its rows (quantized layers, GGUF blocks), and on demand its f32 values.
// Kernels read the stored form directly; f32() widens the whole tensor once (kept until
// releaseF32()), for consumers that want plain floats (views, statistics, small tensors).
class TensorSlot
{
public:
    std::int64_t rows = 0;
    std::int64_t cols = 0;
    DType type = DType::F32;  // element type of `raw`
    const void *raw = nullptr; // row-major elements, or null when only rowFill gives the values
    // Rows [r0, r1) as f32 into out ((r1 - r0) x cols), for tensors without `raw`.
    std::function<void(std::int64_t r0, std::int64_t r1, float *out)> rowFill;

    // The f32 values: in place when stored as aligned f32, else widened once and kept.
    const float *f32() const;
    // Drops the widened copy (in-place and owned mutable buffers stay). Callers must not hold
    // pointers from f32() across this.
    void releaseF32() const;
    // Rows [r0, r1) as f32 (exact widening or dequantization), without keeping anything.
    void rowsToF32(std::int64_t r0, std::int64_t r1, float *out) const;
    // Whether f32() costs nothing (stored as aligned f32).
    bool f32InPlace() const;
    // Bytes of widened f32 values held now.
    std::int64_t widenedBytes() const;

    // Owned storage (a working copy's edited tensors, pruned tensors in their stored dtype).
    std::shared_ptr<void> owned;

private:
    mutable std::mutex m_mutex;
    mutable std::unique_ptr<float[]> m_widened;
    mutable std::atomic<const float *> m_ready{nullptr}; // m_widened once made (lock-free reads)
};

// A row-major matrix (vectors have rows == 1): a weight of a Model (slot) or a plain f32 buffer
// (ptr). data() gives f32 values (widening a Model weight on first use); kernels use the stored
// form through slot.
struct MatrixView
{
    const float *ptr = nullptr; // a plain f32 buffer (views built outside a Model)
    std::int64_t rows = 0;
    std::int64_t cols = 0;
    const TensorSlot *slot = nullptr;

    bool empty() const { return ptr == nullptr && slot == nullptr; }
    const float *data() const { return slot ? slot->f32() : ptr; }
    // Rows [r0, r1) as f32 into out, without widening the whole tensor.
    void rowsToF32(std::int64_t r0, std::int64_t r1, float *out) const;
    // The values as bytes of dtype t (F32, BF16 or F16): the stored bytes themselves when they are
    // of that type, else converted a chunk of rows at a time (never the whole tensor in f32).
    std::vector<std::byte> toBytes(DType t) const;
};

// One expert of a mixture-of-experts MLP: a SwiGLU MLP.
struct ExpertWeights
{
    MatrixView gate, up, down;
};

struct BlockWeights
{
    MatrixView attnNorm, q, k, v, o, qBias, kBias, vBias, oBias;
    MatrixView mlpNorm, gate, up, down, gateBias, upBias, downBias; // gate/up/down empty on MoE layers
    MatrixView router;                  // MoE layers: [experts, hidden], else empty
    std::vector<ExpertWeights> experts; // MoE layers, else empty
    MatrixView qNorm, kNorm; // [head_dim] each (Qwen3, Gemma 3), else empty
    MatrixView postAttnNorm, postMlpNorm; // Gemma's sandwich norms, else empty
};

// A weight given by value (a model read from a GGUF file): its rows on demand (`fill`, e.g.
// dequantizing blocks of the mapped file) or f32 values, with what it was stored as, and
// optionally the quantized form the runtime should use.
struct InMemoryTensor
{
    QString name; // Hugging Face checkpoint name, e.g. "model.layers.0.self_attn.q_proj.weight"
    std::vector<std::int64_t> shape;
    std::vector<float> values; // f32 values in row-major order of `shape`, or empty when `fill` is set
    std::function<void(std::int64_t r0, std::int64_t r1, float *out)> fill;
    std::span<const std::byte> storedData; // the stored bytes (for the weights hash), may be empty
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
    // `keepAlive` owns memory the tensors' fill functions read (a mapped GGUF file).
    static Expected<std::shared_ptr<Model>> fromTensors(const QString &source, const ModelConfig &config,
                                                        std::shared_ptr<const Tokenizer> tokenizer,
                                                        std::vector<InMemoryTensor> tensors, Feedback *feedback = nullptr,
                                                        std::shared_ptr<const void> keepAlive = nullptr);

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
    // Fraction of exact zeros over all linear weights (the compressible matrices); computes the
    // statistics first if needed.
    double linearSparsity() const;
    // Whether every WeightInfo::sparsity is known (always for models up to kEagerStatisticsBytes).
    bool statisticsComputed() const;
    // Reads the weights once (tensor by tensor, nothing kept) to fill WeightInfo::sparsity.
    // Cancellable through `feedback`; thread-safe with respect to other const calls.
    Expected<void> computeStatistics(Feedback *feedback = nullptr) const;
    static constexpr std::int64_t kEagerStatisticsBytes = std::int64_t(512) << 20;
    // kEagerStatisticsBytes, or BITSMITH_EAGER_STATS_BYTES when set (0: never at load).
    static std::int64_t eagerStatisticsBytes();

    // The slot of a weight by checkpoint name (null if unknown).
    const TensorSlot *slot(const QString &name) const;
    // Drops widened f32 copies (of one tensor, or of all); kernels keep working.
    void releaseF32(const QString &name) const;
    void releaseAllF32() const;
    // Bytes of memory the model holds itself (widened copies, owned and packed tensors), not the
    // mapped files.
    std::int64_t residentBytes() const;

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

    // A copy whose every weight is an owned f32 buffer that can be edited in place. Quantized
    // layers stay recorded. Costs 4 bytes per parameter: for small models and tests.
    std::shared_ptr<Model> cloneMutable() const;
    // A working copy that shares the mapped weights: a tensor gets its own f32 buffer only when
    // mutableWeight() asks for it (the compression engine edits one block at a time).
    std::shared_ptr<Model> workingCopy() const;
    bool isMutable() const { return m_mutable; }
    // Writable f32 data of a weight of a mutable model (made on first call; null otherwise or if
    // unknown). Views and kernels that read through the slot see the edits.
    float *mutableWeight(const QString &name);
    // Ends the editing of a tensor of a working copy: a quantized one is then given by its packed
    // form, a pruned one is kept in its stored dtype (spilled when a spill file is set), a
    // modified one stays f32. Frees the f32 buffer where it can.
    void finishEditing(const QString &name);
    // Where a working copy puts packed codes and pruned tensors instead of memory (a file that is
    // created, used while the model lives, and removed by the caller).
    Expected<void> setSpillFile(const QString &path);
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
    // Rows [rowOffset, rowOffset + rows) of the fused checkpoint tensor `fused` (shape fusedShape)
    // as the weight `name`, in place in the mapped file.
    Expected<MatrixView> bindPart(const QString &fused, const std::vector<std::int64_t> &fusedShape, const QString &name,
                                  WeightRole role, int block, std::int64_t rowOffset, std::int64_t rows);
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
        double sparsity = -1.0; // recorded by the writer; -1 = compute from the codes
    };
    std::map<QString, StoredQuantization> m_storedQuantization; // by tensor name
    std::map<QString, InMemoryTensor> m_inMemory; // fromTensors() only, emptied once bound
    std::set<QString> m_auxiliaryTensors; // .qweight/.scales/... consumed by quantized layers

    QString m_folder;
    ModelConfig m_config;
    std::shared_ptr<const Tokenizer> m_tokenizer;
    std::shared_ptr<SafetensorsCollection> m_files;
    mutable std::vector<WeightInfo> m_weights;
    mutable std::mutex m_statsMutex;
    TensorSlot *newSlot(const QString &name);
    TensorSlot *slotFor(const QString &name);
    Expected<std::shared_ptr<const PackedWeights>> spill(PackedWeights packed);
    std::vector<std::unique_ptr<TensorSlot>> m_slots;
    std::unordered_map<QString, TensorSlot *> m_slotIndex;
    std::shared_ptr<const void> m_keepAlive; // memory behind fill functions (fromTensors)
    std::vector<std::pair<QString, std::span<const std::byte>>> m_hashSources; // fromTensors: stored bytes
    struct SpillFile;
    std::shared_ptr<SpillFile> m_spill;
    std::vector<std::pair<QString, MatrixView>> m_views;
    MatrixView m_embedding, m_finalNorm, m_lmHead;
    std::vector<BlockWeights> m_blocks;
    std::vector<QuantizedLayer> m_quantized;
    std::set<QString> m_pruned;
    bool m_mutable = false;
    mutable QString m_hash;
};

} // namespace bitsmith::core

// trainmodel.h: a Llama-family decoder as trainable f32 parameters, with a forward pass that
// saves its activations (a "tape") and the backward pass that turns the gradient of the logits
// into every parameter's gradient. It computes what core/transformer.cpp computes (same
// RMSNorm, rotate_half rope, GQA causal attention, SwiGLU, tied or untied head, q/k/v/o and MLP
// biases), on batches of equal-length sequences starting at position 0.
//
// Students (issue 8):
//   - a compressed model folder: each quantized linear keeps its format and its FROZEN grid
//     (the stored scales, zero points and act-order group index). The trainable value is a
//     latent f32 matrix initialised from the dequantized weights; the forward pass uses the
//     fake-quantized matrix s·(clamp(round(w/s) + z, 0, maxq) − z) and the backward passes the
//     gradient straight through to the latent weights (STE). Frozen scales make the student at
//     step 0 compute exactly what the compressed model computes, and the result re-quantizes to
//     the same format and grid (quantizedResult()).
//   - sparse students: in every dense linear weight, entries that are exactly zero stay zero
//     (their gradient is masked), so a pruned model keeps its sparsity pattern.
//   - architecture changes initialised from the teacher (architectureStudent()).
#pragma once

#include "core/error.h"
#include "core/model.h"
#include "core/modelconfig.h"
#include "core/quant/quantizedtensor.h"

#include <QString>

#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

namespace bitsmith::core::train {

struct Parameter
{
    QString name; // the checkpoint tensor name ("model.layers.0.self_attn.q_proj.weight")
    std::int64_t rows = 1, cols = 0; // vectors have rows == 1
    std::vector<float> value;        // the trainable (latent) values
    std::vector<float> grad;         // accumulated gradient
    bool decay = false;              // AdamW weight decay applies (matrices, not norms or biases)
    // Quantization-aware training: the frozen grid (codes unused) and the fake-quantized values
    // that the forward pass uses.
    std::optional<QuantizedTensor> grid;
    Execution execution = Execution::WeightOnly;
    std::vector<float> effective;
    // Sparse students: 1 where the weight may change, 0 where it must stay zero (empty = none).
    std::vector<std::uint8_t> mask;

    std::int64_t size() const { return rows * cols; }
    const float *forwardData() const { return grid ? effective.data() : value.data(); }
};

// Indices into TrainModel::params() (-1 = absent).
struct TrainBlock
{
    int attnNorm = -1, q = -1, k = -1, v = -1, o = -1, qBias = -1, kBias = -1, vBias = -1, oBias = -1;
    int mlpNorm = -1, gate = -1, up = -1, down = -1, gateBias = -1, upBias = -1, downBias = -1;
};

// Activations saved by forward() for backward().
struct Tape
{
    struct Block
    {
        std::vector<float> xIn, xn1, r1, q, k, v, probs, att, xMid, xn2, r2, g, u, a;
    };
    std::int64_t seqs = 0, t = 0;
    std::vector<std::int32_t> ids;
    std::vector<Block> blocks;
    std::vector<float> xFinal, rf, xnf, logits; // logits [seqs * t, vocab]
    // The residual stream after block l is blocks[l + 1].xIn, or xFinal for the last block.
    const std::vector<float> &blockOutput(int l) const
    {
        return l + 1 < static_cast<int>(blocks.size()) ? blocks[static_cast<std::size_t>(l) + 1].xIn : xFinal;
    }
};

class TrainModel
{
public:
    // Every weight of `model` copied to f32 parameters. Quantized layers become QAT parameters
    // with their grid frozen; with freezeZeros, exact zeros of dense linear weights are masked.
    static Expected<TrainModel> fromModel(const Model &model, bool freezeZeros = true);

    // A student of changed architecture initialised from the teacher. `spec` is a comma list of
    //   layers:every-other  keep blocks 0, 2, 4, ... (DistilBERT's initialisation)
    //   layers:K            keep the first K blocks
    //   mlp:R               keep round(R · intermediate) MLP neurons per block, those with the
    //                       largest ‖gate_j‖·‖up_j‖·‖down_:,j‖ (in their original order)
    //   init:random         re-initialise every weight (normal, std 0.02; norms 1): "from scratch"
    static Expected<TrainModel> architectureStudent(const Model &teacher, const QString &spec, std::uint64_t seed = 0);

    const ModelConfig &config() const { return m_config; }
    std::vector<Parameter> &params() { return m_params; }
    const std::vector<Parameter> &params() const { return m_params; }
    const std::vector<TrainBlock> &blocks() const { return m_blocks; }
    const Parameter *find(const QString &name) const;
    std::int64_t parameterCount() const;

    // Recomputes the fake-quantized values of QAT parameters (call after each update).
    void refreshEffective();
    // Applies sparse masks to the gradients (call before the optimizer step).
    void maskGradients();
    void zeroGrad();

    // Runs `seqs` sequences of `t` tokens (ids: seqs * t, valid ids) and saves the activations.
    void forward(const std::int32_t *ids, std::int64_t seqs, std::int64_t t, Tape &tape) const;
    // Adds every parameter's gradient given dlogits [seqs * t, vocab] (overwritten as scratch).
    // dBlockOut (optional, one entry per block, empty entries skipped) adds gradients flowing
    // into the residual stream after that block (hidden-state losses).
    void backward(Tape &tape, std::vector<float> &dlogits,
                  const std::vector<std::vector<float>> *dBlockOut = nullptr);

    // The quantized form of QAT parameter `p`: its grid with codes of the current latent values.
    QuantizedTensor quantizedResult(const Parameter &p) const;

private:
    int add(QString name, std::int64_t rows, std::int64_t cols, const float *data, bool decay);
    void rebuildIndex(); // recomputes m_blocks / m_embedding / ... from parameter names

    ModelConfig m_config;
    std::vector<Parameter> m_params;
    std::vector<TrainBlock> m_blocks;
    int m_embedding = -1, m_finalNorm = -1, m_lmHead = -1; // lmHead -1 when tied
    std::vector<float> m_invFreq;
};

} // namespace bitsmith::core::train

// rope.h: rotary position embedding frequencies of every rope type transformers defines for the
// Llama family (modeling_rope_utils.py, transformers 4.4x-5.x): default, linear, dynamic (NTK),
// llama3, yarn and longrope. The arithmetic follows transformers' own: the frequencies are f32
// tensors there, so they are computed in f32 here in the same order, and the scalars transformers
// derives with Python floats (yarn's correction range, attention factors) in double.
#pragma once

#include <QString>

#include <cmath>
#include <limits>
#include <vector>

namespace bitsmith::core {

enum class RopeType { Default, Linear, Dynamic, Llama3, Yarn, LongRope };

struct RopeScaling
{
    RopeType type = RopeType::Default;
    double factor = 1.0;
    // llama3
    double lowFreqFactor = 1.0, highFreqFactor = 4.0;
    // llama3, yarn, longrope: the pre-training context (defaults to max_position_embeddings)
    int originalMaxPositions = 0;
    // yarn, longrope: NaN = derived from factor as transformers does
    double attentionFactor = std::numeric_limits<double>::quiet_NaN();
    // yarn
    double betaFast = 32.0, betaSlow = 1.0;
    double mscale = 0.0, mscaleAllDim = 0.0; // 0 = absent
    bool truncate = true;
    // longrope: one factor per frequency (head_dim / 2 each)
    std::vector<double> shortFactor, longFactor;
};

const char *ropeTypeName(RopeType t);

// The inverse frequencies (headDim / 2 of them) for a forward pass whose last position is
// seqLen - 1, and the factor transformers multiplies cos and sin by (attentionScaling).
// maxPositions is config.max_position_embeddings. Only dynamic and longrope depend on seqLen:
//   * dynamic: base scaled for seqLen > maxPositions (transformers recomputes per forward call;
//     Bitsmith uses the length of the call, which is what transformers does for a fresh sequence);
//   * longrope: long factors when seqLen > originalMaxPositions, short ones otherwise.
std::vector<float> ropeInverseFrequencies(const RopeScaling &scaling, double theta, int headDim, int maxPositions,
                                          int seqLen, double *attentionScaling = nullptr);

// Whether the frequencies change with the sequence length (dynamic, longrope).
inline bool ropeDependsOnLength(RopeType t) { return t == RopeType::Dynamic || t == RopeType::LongRope; }

} // namespace bitsmith::core

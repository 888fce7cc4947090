// ops.h: forward and backward passes of the operations of a Llama-family decoder, in f32, for
// training (core/train/trainmodel.h strings them together). Each backward takes the gradient of
// the op's output and the activations its forward saved, and writes (or, for parameter
// gradients, adds) the gradients of the inputs. Matrices are row-major; "rows" are tokens.
// Conventions follow transformers' modeling_llama.py like core/transformer.cpp does: RMSNorm
// x * rsqrt(mean(x²) + eps) * w, rotate_half rotary embeddings, 1/sqrt(headDim) attention
// scale, causal softmax, SwiGLU silu(gate) * up. tests/core/tst_train.cpp checks every backward
// by finite differences and the whole model against PyTorch.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace bitsmith::core::train {

// y[n, out] = x[n, in] · W[out, in]ᵀ (+ b[out]).
void linearForward(const float *x, std::int64_t n, std::int64_t in, const float *w, const float *b, std::int64_t out,
                   float *y);
// dx[n, in] = dy · W (written; skipped when dx is null); dW += dyᵀ · x; db += Σ_rows dy (when db).
void linearBackward(const float *x, std::int64_t n, std::int64_t in, const float *w, std::int64_t out,
                    const float *dy, float *dx, float *dw, float *db);

// y = x * r * w with r = 1/sqrt(mean(x²) + eps) per row; `invRms` (n values) is saved for backward.
void rmsNormForward(const float *x, const float *w, std::int64_t n, std::int64_t cols, float eps, float *y,
                    float *invRms);
// dx = r·(dy∘w) − x·r³/cols·Σ(dy∘w∘x) (written); dw += Σ_rows dy∘x·r.
void rmsNormBackward(const float *x, const float *w, const float *invRms, std::int64_t n, std::int64_t cols,
                     const float *dy, float *dx, float *dw);

// The inverse frequencies of rotary embeddings, computed in f32 like transformers' default rope.
std::vector<float> ropeInvFreq(int headDim, double theta);
// In place on x [seqs * t, heads * headDim]: the token at row s*t + i sits at position i.
// inverse = true applies the transposed rotation (the backward pass of the forward rotation).
void ropeApply(float *x, std::int64_t seqs, std::int64_t t, int heads, int headDim, std::span<const float> invFreq,
               bool inverse);

// Causal grouped-query attention over `seqs` sequences of t tokens each. q [seqs*t, nH*hd],
// k and v [seqs*t, nKv*hd] (after rope); out [seqs*t, nH*hd]; probs [seqs, nH, t, t] (saved
// for backward; entries above the diagonal are 0).
void attentionForward(const float *q, const float *k, const float *v, std::int64_t seqs, std::int64_t t, int nH,
                      int nKv, int hd, float *out, float *probs);
// dq, dk, dv are written.
void attentionBackward(const float *q, const float *k, const float *v, const float *probs, std::int64_t seqs,
                       std::int64_t t, int nH, int nKv, int hd, const float *dout, float *dq, float *dk, float *dv);

// a = silu(g) * u, elementwise over `count` values.
void swigluForward(const float *g, const float *u, std::int64_t count, float *a);
// dg, du written.
void swigluBackward(const float *g, const float *u, std::int64_t count, const float *da, float *dg, float *du);

// Cross-entropy of logits [n, vocab] against targets (n ids), averaged over the n rows.
// dlogits (n * vocab, may be null) receives scale · d(loss)/d(logits) (written).
double crossEntropy(const float *logits, std::int64_t n, std::int64_t vocab, const std::int32_t *targets,
                    float *dlogits, float scale = 1.0f);

// Σ_v p_t (log p_t − log p_s) with p = softmax(logits / T), averaged over the n rows (the
// "batchmean" KL of PyTorch's kl_div). dStudent (may be null) receives scale · d(KL)/d(student
// logits) = scale · (p_s − p_t) / (T · n), ADDED to what it holds.
double klDivergence(const float *teacher, const float *student, std::int64_t n, std::int64_t vocab, float temperature,
                    float *dStudent, float scale = 1.0f);

// Embedding rows for ids; backward adds dx rows into dE.
void embeddingForward(const float *table, std::int64_t cols, const std::int32_t *ids, std::int64_t n, float *x);
void embeddingBackward(std::int64_t cols, const std::int32_t *ids, std::int64_t n, const float *dx, float *dTable);

} // namespace bitsmith::core::train

// mask.h: pruning masks from per-weight importance scores — unstructured (per output row or over
// the whole layer) and N:M semi-structured — and the scores of magnitude pruning and Wanda
// (Sun et al., "A Simple and Effective Pruning Approach for Large Language Models").
//
// Ties: among equal scores the weight with the lower index (row-major) is pruned first, the order
// of numpy's stable argsort, so that masks are reproducible and match tools/prune_reference.py.
#pragma once

#include "core/error.h"         // Expected
#include "core/model.h"         // MatrixView
#include "core/sdk/technique.h" // SparsityPattern

#include <cstdint>
#include <span>
#include <vector>

namespace bitsmith::core {

enum class MaskScope {
    Row,   // each output row loses the same fraction (Wanda's choice)
    Layer, // one threshold over the whole matrix
};

// Keep-mask (1 = keep, 0 = prune) of a [rows, cols] row-major score matrix.
// N:M pattern: in every M consecutive columns of a row, the M - N lowest scores are pruned
// (`sparsity` and `scope` are then ignored; cols must be a multiple of M).
// Unstructured: floor(sparsity * n) lowest scores are pruned, n = cols (Row) or rows * cols (Layer).
// Errors: sparsity outside [0, 1), cols not a multiple of M, a score count that does not match,
// NaN scores.
Expected<std::vector<std::uint8_t>> selectMask(std::span<const float> scores, std::int64_t rows, std::int64_t cols,
                                               double sparsity, SparsityPattern pattern, MaskScope scope);

// |W| (magnitude pruning).
std::vector<float> magnitudeScores(MatrixView w);

// Wanda: |W_ij| · ||X_j||₂ with ||X_j||₂ = sqrt(meanSquare_j · tokens) over the calibration tokens.
std::vector<float> wandaScores(MatrixView w, std::span<const double> meanSquare, std::int64_t tokens);

// w with the pruned entries (mask 0) set to zero.
std::vector<float> applyMask(MatrixView w, std::span<const std::uint8_t> mask);

// Whether every M consecutive columns of every row of w hold at most N nonzeros.
bool satisfiesPattern(MatrixView w, SparsityPattern pattern);

// Checks that a layer of `cols` inputs can take these settings (pattern divides cols, sparsity in
// range, something to prune). Errors name the parameter ("sparsity" or "pattern").
Expected<void> validateSparsity(double sparsity, SparsityPattern pattern, std::int64_t cols);

} // namespace bitsmith::core

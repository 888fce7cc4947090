// packedweights.h: a QuantizedTensor packed for execution and storage — b-bit codes as a
// little-endian bit-stream per row, group scales and zeros, and (for act-order) the column order
// that makes every group a contiguous run of columns. The byte layout below is also the layout of
// the code tensors in Bitsmith's compressed model folders, so it must not change silently.
//
// Packed layout, format version 1 (kPackedLayoutVersion):
//   * Column order. Packed column j holds original column columnOrder()[j]. Without a group index
//     (no act-order) the order is the identity. With one, it is the *stable* sort of the columns
//     by groupIndex[c] (ties keep ascending column order), so it is fully determined by the group
//     index and is not stored separately: a loader recomputes it from groupIndex.
//   * Codes. Every row is its own bit-stream of cols * bits bits, rowBytes() = ceil(cols*bits/8)
//     bytes, rows stored one after the other (row r starts at byte r * rowBytes()). Packed column j
//     occupies stream bits [j*bits, j*bits + bits), least significant bit first, and stream bit i
//     is bit (i % 8) of byte (i / 8). Hence:
//       8-bit: one code per byte;
//       4-bit: two codes per byte, column 2i in the low nibble of byte i, 2i+1 in the high nibble;
//       2-bit: four per byte, column 4i in bits 0-1 of byte i, ..., 4i+3 in bits 6-7;
//       3-bit: eight codes in three bytes: c0 = b0[0:2], c1 = b0[3:5], c2 = b0[6:7] | b1[0] << 2,
//              c3 = b1[1:3], c4 = b1[4:6], c5 = b1[7] | b2[0:1] << 1, c6 = b2[2:4], c7 = b2[5:7];
//       5-, 6-, 7-bit: likewise, 8 codes in 5, 6, 7 bytes.
//     Unused bits at the end of a row are zero.
//   * Scales: rows x groupsPerRow() floats, row-major, indexed by the *original* group number
//     (groupIndex value, or column / groupSize). The values are fp16-representable (quantizers
//     round them so); they are kept as f32 in memory so that kernels need no conversion.
//   * Zeros: same shape, integer-valued floats in [0, 2^bits - 1]. For a symmetric format the
//     vector may be empty, meaning 2^(bits-1) everywhere (zeroPoint() answers for both cases).
//   * Group index: empty, or cols int32 values in [0, groupsPerRow()), in original column order.
#pragma once

#include "core/error.h"
#include "core/quant/quantizedtensor.h"

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

namespace bitsmith::core {

class PackedWeights
{
public:
    static constexpr int kPackedLayoutVersion = 1;
    // Bytes of zero padding kept after the last row in memory (never serialised), so that vector
    // kernels may load a whole block past the end of a row without a bounds check.
    static constexpr std::int64_t kTailPadding = 64;

    // A maximal run of packed columns [begin, end) that all belong to group `group`.
    struct GroupRun
    {
        std::int64_t begin = 0;
        std::int64_t end = 0;
        std::int32_t group = 0;
    };

    PackedWeights() = default;

    // Packs a quantized tensor. Fails (InvalidArgument) if the tensor is inconsistent: bits outside
    // 2..8, vector sizes that do not match rows/cols/groups, a code or zero out of range, or a
    // group index out of range.
    static Expected<PackedWeights> pack(const QuantizedTensor &tensor);

    // Rebuilds from the stored parts (the inverse of packedCodes()/scales()/zeros()/groupIndex()).
    // `bytes` must be rows * rowBytes long, in the layout above. Fails (Format) on any size or range
    // mismatch, so a corrupt file never reaches a kernel.
    static Expected<PackedWeights> fromPacked(std::int64_t rows, std::int64_t cols, QuantFormat format,
                                              std::span<const std::uint8_t> bytes, std::vector<float> scales,
                                              std::vector<float> zeros, std::vector<std::int32_t> groupIndex);

    // Like fromPacked(), but the code bytes stay where they are (a memory-mapped file) instead of
    // being copied: `keepAlive` owns them, and `readableAfter` bytes after them must be readable
    // (the kernels' tail padding; with fewer, the codes are copied after all).
    static Expected<PackedWeights> fromPackedInPlace(std::int64_t rows, std::int64_t cols, QuantFormat format,
                                                     std::span<const std::uint8_t> bytes, std::size_t readableAfter,
                                                     std::shared_ptr<const void> keepAlive, std::vector<float> scales,
                                                     std::vector<float> zeros, std::vector<std::int32_t> groupIndex);

    // The original tensor, exactly (codes in original column order, same scales/zeros/index).
    QuantizedTensor unpack() const;
    // Rows [r0, r1) dequantized to f32, original column order (out: (r1 - r0) x cols).
    void dequantizeRows(std::int64_t r0, std::int64_t r1, float *out) const;
    // Fraction of weights that dequantize to exactly zero.
    double zeroFraction() const;
    // Whether the codes live outside this object (a mapped file).
    bool codesInPlace() const { return m_external != nullptr; }
    // Bytes held in memory by this object (codes unless in place, scales, zeros, indices).
    std::int64_t residentBytes() const;

    std::int64_t rows() const { return m_rows; }
    std::int64_t cols() const { return m_cols; }
    const QuantFormat &format() const { return m_format; }
    int bits() const { return m_format.bits; }
    std::int64_t groupsPerRow() const { return m_groupsPerRow; }
    std::int64_t rowBytes() const { return m_rowBytes; }

    // The serialised code bytes: rows * rowBytes(), without the in-memory tail padding.
    std::span<const std::uint8_t> packedCodes() const
    {
        return {codesBase(), static_cast<std::size_t>(m_rows * m_rowBytes)};
    }
    // Start of row r's bit-stream; at least kTailPadding readable bytes follow the last row.
    const std::uint8_t *rowData(std::int64_t r) const { return codesBase() + r * m_rowBytes; }

    const std::vector<float> &scales() const { return m_scales; }
    const std::vector<float> &zeros() const { return m_zeros; }
    const std::vector<std::int32_t> &groupIndex() const { return m_groupIndex; }
    bool actOrder() const { return !m_groupIndex.empty(); }

    float scale(std::int64_t r, std::int64_t g) const { return m_scales[static_cast<std::size_t>(r * m_groupsPerRow + g)]; }
    // The zero point, also for symmetric tensors stored without zeros.
    float zeroPoint(std::int64_t r, std::int64_t g) const
    {
        return m_zeros.empty() ? static_cast<float>(1 << (m_format.bits - 1))
                               : m_zeros[static_cast<std::size_t>(r * m_groupsPerRow + g)];
    }

    // Packed column j -> original column; empty means identity (no act-order).
    const std::vector<std::int32_t> &columnOrder() const { return m_columnOrder; }
    // The runs of equal group along a packed row, in packed order; they cover [0, cols).
    const std::vector<GroupRun> &groupRuns() const { return m_runs; }

    // Code of packed column j in row r (a reference decoder, used by tests and scalar code).
    int code(std::int64_t r, std::int64_t j) const
    {
        const std::int64_t bit = j * m_format.bits;
        const std::uint8_t *p = rowData(r) + (bit >> 3);
        const unsigned word = p[0] | (static_cast<unsigned>(p[1]) << 8); // p[1] is padding at worst
        return static_cast<int>((word >> (bit & 7)) & static_cast<unsigned>(m_format.maxCode()));
    }

private:
    // Fills m_columnOrder and m_runs from the format and group index.
    void buildColumnOrder();
    Expected<void> checkPadding() const;
    const std::uint8_t *codesBase() const { return m_external ? m_externalCodes : m_codes.data(); }

    std::int64_t m_rows = 0;
    std::int64_t m_cols = 0;
    QuantFormat m_format;
    std::int64_t m_groupsPerRow = 0;
    std::int64_t m_rowBytes = 0;
    std::vector<std::uint8_t> m_codes; // rows * rowBytes + kTailPadding (empty when in place)
    std::shared_ptr<const void> m_external; // owner of m_externalCodes when the codes are in place
    const std::uint8_t *m_externalCodes = nullptr;
    std::vector<float> m_scales;
    std::vector<float> m_zeros;
    std::vector<std::int32_t> m_groupIndex;
    std::vector<std::int32_t> m_columnOrder;
    std::vector<GroupRun> m_runs;
};

} // namespace bitsmith::core

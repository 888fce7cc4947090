// ggmltype.h: the ggml tensor element types that GGUF files store and Bitsmith reads and writes
// (F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K): their ids, block
// sizes and byte sizes, dequantization, reference-style quantization, and the exact path that
// writes Bitsmith's own codes and scales into the 32-element block types.
//
// Block layouts (facts from ggml's documentation and source; our own implementation). All
// multi-byte fields are little-endian; "half" is IEEE fp16.
//   Q4_0  32 el, 18 B: half d; u8 qs[16]            y = d * (q - 8)
//   Q4_1  32 el, 20 B: half d, m; u8 qs[16]         y = d * q + m
//   Q5_0  32 el, 22 B: half d; u32 qh; u8 qs[16]    y = d * (q - 16), q = low nibble | bit j of qh << 4
//   Q5_1  32 el, 24 B: half d, m; u32 qh; u8 qs[16] y = d * q + m
//   Q8_0  32 el, 34 B: half d; i8 qs[32]            y = d * q
//   (nibbles: element j < 16 in the low nibble of qs[j], element j + 16 in its high nibble)
//   Q2_K 256 el, 84 B: u8 scales[16] (low nibble scale, high nibble min); u8 qs[64]; half d, dmin
//   Q3_K 256 el, 110 B: u8 hmask[32]; u8 qs[64]; u8 scales[12] (16 6-bit scales, offset 32); half d
//   Q4_K 256 el, 144 B: half d, dmin; u8 scales[12] (8 6-bit scales and 8 6-bit mins); u8 qs[128]
//   Q5_K 256 el, 176 B: half d, dmin; u8 scales[12]; u8 qh[32]; u8 qs[128]
//   Q6_K 256 el, 210 B: u8 ql[128]; u8 qh[64]; i8 scales[16]; half d
#pragma once

#include "core/error.h"
#include "core/quant/quantizedtensor.h"

#include <QString>

#include <cstdint>
#include <optional>
#include <vector>

namespace bitsmith::core::gguf {

enum class GgmlType : std::uint32_t {
    F32 = 0,
    F16 = 1,
    Q4_0 = 2,
    Q4_1 = 3,
    Q5_0 = 6,
    Q5_1 = 7,
    Q8_0 = 8,
    Q2_K = 10,
    Q3_K = 11,
    Q4_K = 12,
    Q5_K = 13,
    Q6_K = 14,
    BF16 = 30,
};

// The types above, in a stable order (for tests and listings).
const std::vector<GgmlType> &supportedGgmlTypes();
// nullopt for ids Bitsmith does not read (IQ*, Q8_1, ...).
std::optional<GgmlType> ggmlTypeFromId(std::uint32_t id);
// "Q4_K", "F16", ...; parsing is case-insensitive.
const char *ggmlTypeName(GgmlType t);
std::optional<GgmlType> ggmlTypeFromName(const QString &name);
// Elements per block (1 for the float types) and bytes per block.
int ggmlBlockSize(GgmlType t);
int ggmlTypeSize(GgmlType t);
// Bytes of `n` elements (n must be a multiple of the block size; -1 otherwise).
std::int64_t ggmlBytes(GgmlType t, std::int64_t n);
// Nominal bits per weight (type size * 8 / block size).
double ggmlBitsPerWeight(GgmlType t);

// Dequantizes `n` elements (a multiple of the block size) from `src` to f32.
void dequantizeRow(GgmlType t, const std::uint8_t *src, float *dst, std::int64_t n);
// Quantizes `n` elements (a multiple of the block size) to `dst` (ggmlBytes(t, n) bytes) with a
// reference-style round-to-nearest quantizer (min/max or absmax scales, small scale search for
// the k-quants). Non-finite inputs are treated as zero.
void quantizeRow(GgmlType t, const float *src, std::uint8_t *dst, std::int64_t n);

// The 32-element GGUF block type that holds a Bitsmith format exactly, if any: symmetric g32
// 4/5/8-bit -> Q4_0/Q5_0/Q8_0, asymmetric g32 4/5-bit -> Q4_1/Q5_1.
std::optional<GgmlType> exactBlockType(const QuantFormat &format);

// What encodeQuantized() did.
struct EncodeStats
{
    std::int64_t groups = 0;
    std::int64_t inexactGroups = 0; // groups whose min (-scale*zero) or scale is not an fp16 value
    double maxAbsDeviation = 0.0;   // largest |written value - Bitsmith value| over the tensor
};

// Writes Bitsmith's codes and scales (and zeros) as blocks of `type` (= exactBlockType(format)),
// row by row. Codes are kept; for Q4_1/Q5_1 the min m = -scale*zero is rounded to fp16 where it
// is not exactly representable (counted in stats). Errors: format not representable in `type`,
// act-order group index, or cols not a multiple of 32.
Expected<std::vector<std::uint8_t>> encodeQuantized(const QuantizedTensor &q, GgmlType type, EncodeStats *stats = nullptr);

// The inverse for Bitsmith's runtime: turns blocks of a 32-element type back into codes, scales
// and integer zeros when every block is of that form (d >= 0, and for Q4_1/Q5_1 m = -d*zero with
// an integer zero in range). nullopt otherwise (e.g. files quantized by llama.cpp with negative d).
std::optional<QuantizedTensor> decodeToQuantized(GgmlType type, const std::uint8_t *src, std::int64_t rows, std::int64_t cols);

} // namespace bitsmith::core::gguf

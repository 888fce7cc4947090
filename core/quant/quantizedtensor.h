// quantizedtensor.h: a weight matrix quantized to b-bit integer codes with per-group scales and
// zero points — the common currency between quantizers (RTN, GPTQ, AWQ, ...), kernels, the
// compressed model folder and exporters (GGUF, GPTQ checkpoints).
//
// Dequantization: w[r][c] = scale[r][g] * (code[r][c] - zero[r][g]), g = group of column c.
// Groups: groupSize > 0 groups `groupSize` consecutive input columns (the last may be shorter);
// groupSize == 0 is one group per output row (per-channel); groupSize == -1 one group for the
// whole tensor (scales/zeros still stored per row, all equal). With act-order (GPTQ) a column's
// group is groupIndex[c] instead of c / groupSize.
#pragma once

#include <cstdint>
#include <vector>

namespace bitsmith::core {

struct QuantFormat
{
    int bits = 4;          // 2..8
    int groupSize = 128;   // > 0: columns per group; 0: per output channel; -1: per tensor
    bool symmetric = false; // symmetric: zero fixed at 2^(bits-1), no zeros stored

    int maxCode() const { return (1 << bits) - 1; }
    bool operator==(const QuantFormat &) const = default;
};

// How a quantized layer runs.
enum class Execution {
    WeightOnly, // packed b-bit weights, f32 activations (Bitsmith's kernel)
    W8A8,       // int8 weights and per-token dynamic int8 activations (oneDNN int8)
};

struct QuantizedTensor
{
    std::int64_t rows = 0; // output features
    std::int64_t cols = 0; // input features
    QuantFormat format;
    std::vector<std::uint8_t> codes;      // rows * cols, row-major, each in [0, 2^bits - 1]
    std::vector<float> scales;            // rows * groupsPerRow(); values representable in fp16
    std::vector<float> zeros;             // rows * groupsPerRow(); integer-valued, in [0, 2^bits - 1];
                                          // may be empty when symmetric (see zero())
    std::vector<std::int32_t> groupIndex; // empty, or cols entries (act-order)

    // Groups along a row (1 for per-channel and per-tensor).
    std::int64_t groupsPerRow() const
    {
        return format.groupSize > 0 ? (cols + format.groupSize - 1) / format.groupSize : 1;
    }
    std::int64_t groupOf(std::int64_t col) const
    {
        if (!groupIndex.empty())
            return groupIndex[static_cast<std::size_t>(col)];
        return format.groupSize > 0 ? col / format.groupSize : 0;
    }
    float scale(std::int64_t r, std::int64_t g) const { return scales[static_cast<std::size_t>(r * groupsPerRow() + g)]; }
    // Symmetric tensors may leave `zeros` empty: the zero point is then 2^(bits-1) everywhere.
    float zero(std::int64_t r, std::int64_t g) const
    {
        if (zeros.empty())
            return static_cast<float>(1 << (format.bits - 1));
        return zeros[static_cast<std::size_t>(r * groupsPerRow() + g)];
    }
    float value(std::int64_t r, std::int64_t c) const
    {
        const std::int64_t g = groupOf(c);
        return scale(r, g) * (static_cast<float>(codes[static_cast<std::size_t>(r * cols + c)]) - zero(r, g));
    }
    // Writes the rows x cols f32 matrix.
    void dequantize(float *out) const
    {
        for (std::int64_t r = 0; r < rows; ++r)
            for (std::int64_t c = 0; c < cols; ++c)
                out[r * cols + c] = value(r, c);
    }

    // Storage as Bitsmith (and GPTQ checkpoints) keep it: packed codes, fp16 scales, and packed
    // b-bit zeros unless symmetric; act-order adds a 32-bit group index per column.
    std::int64_t storageBits() const
    {
        const std::int64_t groups = format.groupSize == -1 ? 1 : rows * groupsPerRow();
        std::int64_t bits = rows * cols * format.bits + groups * 16;
        if (!format.symmetric)
            bits += groups * format.bits;
        if (!groupIndex.empty())
            bits += cols * 32;
        return bits;
    }
    double bitsPerWeight() const
    {
        return rows > 0 && cols > 0 ? static_cast<double>(storageBits()) / static_cast<double>(rows * cols) : 0.0;
    }
};

} // namespace bitsmith::core

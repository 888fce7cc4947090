// dtype.h: element types of stored tensors and the exact conversions between them.
#pragma once

#include <QString>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>

namespace bitsmith::core {

enum class DType { F64, F32, F16, BF16, I64, I32, I16, I8, U8, Bool };

// Bytes per element.
std::size_t dtypeSize(DType t);
// The safetensors spelling: "F32", "BF16", ...
const char *dtypeName(DType t);
// Parses the safetensors spelling; nullopt for unknown or unsupported names (e.g. "F8_E4M3").
std::optional<DType> dtypeFromName(const QString &name);
bool isFloatingPoint(DType t);

// IEEE half and bfloat16 <-> float. Widening is exact; narrowing rounds to nearest even.
inline float bf16ToFloat(std::uint16_t h)
{
    const std::uint32_t bits = static_cast<std::uint32_t>(h) << 16;
    float f;
    std::memcpy(&f, &bits, sizeof f);
    return f;
}

std::uint16_t floatToBf16(float f);
float halfToFloat(std::uint16_t h);
std::uint16_t floatToHalf(float f);

// Converts `count` elements of floating type `src` at `data` to float (exact for F16/BF16/F32).
void convertToFloat(DType src, const void *data, std::size_t count, float *out);

} // namespace bitsmith::core

// dtype.cpp: element sizes, names and float conversions.
#include "dtype.h"

#include <cmath>

namespace bitsmith::core {

std::size_t dtypeSize(DType t)
{
    switch (t) {
    case DType::F64: case DType::I64: return 8;
    case DType::F32: case DType::I32: return 4;
    case DType::F16: case DType::BF16: case DType::I16: return 2;
    case DType::I8: case DType::U8: case DType::Bool: return 1;
    }
    return 0;
}

const char *dtypeName(DType t)
{
    switch (t) {
    case DType::F64: return "F64";
    case DType::F32: return "F32";
    case DType::F16: return "F16";
    case DType::BF16: return "BF16";
    case DType::I64: return "I64";
    case DType::I32: return "I32";
    case DType::I16: return "I16";
    case DType::I8: return "I8";
    case DType::U8: return "U8";
    case DType::Bool: return "BOOL";
    }
    return "?";
}

std::optional<DType> dtypeFromName(const QString &name)
{
    static const struct { const char *n; DType t; } table[] = {
        {"F64", DType::F64}, {"F32", DType::F32}, {"F16", DType::F16}, {"BF16", DType::BF16},
        {"I64", DType::I64}, {"I32", DType::I32}, {"I16", DType::I16}, {"I8", DType::I8},
        {"U8", DType::U8},   {"BOOL", DType::Bool},
    };
    for (const auto &e : table)
        if (name == QLatin1String(e.n))
            return e.t;
    return std::nullopt;
}

bool isFloatingPoint(DType t)
{
    return t == DType::F64 || t == DType::F32 || t == DType::F16 || t == DType::BF16;
}

std::uint16_t floatToBf16(float f)
{
    std::uint32_t bits;
    std::memcpy(&bits, &f, sizeof bits);
    if (std::isnan(f))
        return static_cast<std::uint16_t>((bits >> 16) | 0x40); // keep it a quiet NaN
    const std::uint32_t rounding = 0x7FFF + ((bits >> 16) & 1);
    return static_cast<std::uint16_t>((bits + rounding) >> 16);
}

float halfToFloat(std::uint16_t h)
{
    const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000) << 16;
    std::uint32_t exp = (h >> 10) & 0x1F;
    std::uint32_t mant = h & 0x3FF;
    std::uint32_t bits;
    if (exp == 0) {
        if (mant == 0) {
            bits = sign;
        } else { // subnormal: normalise
            int e = -1;
            do {
                ++e;
                mant <<= 1;
            } while ((mant & 0x400) == 0);
            mant &= 0x3FF;
            bits = sign | static_cast<std::uint32_t>(127 - 15 - e) << 23 | mant << 13;
        }
    } else if (exp == 0x1F) {
        bits = sign | 0x7F800000u | mant << 13;
    } else {
        bits = sign | (exp + 127 - 15) << 23 | mant << 13;
    }
    float f;
    std::memcpy(&f, &bits, sizeof f);
    return f;
}

std::uint16_t floatToHalf(float f)
{
    std::uint32_t x;
    std::memcpy(&x, &f, sizeof x);
    const std::uint32_t sign = (x >> 16) & 0x8000;
    const std::uint32_t absx = x & 0x7FFFFFFF;
    if (absx >= 0x7F800000) // inf or nan
        return static_cast<std::uint16_t>(sign | 0x7C00 | (absx > 0x7F800000 ? 0x200 : 0));
    if (absx >= 0x477FF000) // rounds to >= 65520: overflow to inf
        return static_cast<std::uint16_t>(sign | 0x7C00);
    if (absx < 0x38800000) { // below the smallest normal half: subnormal or zero
        const float a = std::fabs(f);
        // subnormal step is 2^-24; nearbyint rounds half to even in the default mode
        const auto m = static_cast<std::uint32_t>(std::nearbyint(a * 16777216.0f));
        return static_cast<std::uint16_t>(sign | m);
    }
    const std::uint32_t exp = ((absx >> 23) - 127 + 15);
    std::uint32_t mant = absx & 0x7FFFFF;
    std::uint32_t h = (exp << 10) | (mant >> 13);
    const std::uint32_t rest = mant & 0x1FFF;
    if (rest > 0x1000 || (rest == 0x1000 && (h & 1)))
        ++h; // may carry into the exponent, which is the right result
    return static_cast<std::uint16_t>(sign | h);
}

void convertToFloat(DType src, const void *data, std::size_t count, float *out)
{
    switch (src) {
    case DType::F32:
        std::memcpy(out, data, count * sizeof(float));
        return;
    case DType::BF16: {
        const auto *p = static_cast<const unsigned char *>(data);
        for (std::size_t i = 0; i < count; ++i) {
            std::uint16_t h;
            std::memcpy(&h, p + 2 * i, 2);
            out[i] = bf16ToFloat(h);
        }
        return;
    }
    case DType::F16: {
        const auto *p = static_cast<const unsigned char *>(data);
        for (std::size_t i = 0; i < count; ++i) {
            std::uint16_t h;
            std::memcpy(&h, p + 2 * i, 2);
            out[i] = halfToFloat(h);
        }
        return;
    }
    case DType::F64: {
        const auto *p = static_cast<const unsigned char *>(data);
        for (std::size_t i = 0; i < count; ++i) {
            double d;
            std::memcpy(&d, p + 8 * i, 8);
            out[i] = static_cast<float>(d);
        }
        return;
    }
    default:
        for (std::size_t i = 0; i < count; ++i)
            out[i] = 0.0f;
        return;
    }
}

} // namespace bitsmith::core

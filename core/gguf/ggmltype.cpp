// ggmltype.cpp: ggml block formats: dequantization, reference-style quantization and the exact
// codes+scales path. Layouts are described in ggmltype.h.
#include "ggmltype.h"

#include "core/dtype.h" // floatToHalf, halfToFloat

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>

namespace bitsmith::core::gguf {

namespace {

struct Traits
{
    GgmlType type;
    const char *name;
    int blockSize;
    int typeSize;
};

constexpr int kQK = 32;   // elements of a Q4_0..Q8_0 block
constexpr int kQKK = 256; // elements of a k-quant super-block

constexpr std::array<Traits, 13> kTraits = {{
    {GgmlType::F32, "F32", 1, 4},
    {GgmlType::F16, "F16", 1, 2},
    {GgmlType::BF16, "BF16", 1, 2},
    {GgmlType::Q4_0, "Q4_0", kQK, 18},
    {GgmlType::Q4_1, "Q4_1", kQK, 20},
    {GgmlType::Q5_0, "Q5_0", kQK, 22},
    {GgmlType::Q5_1, "Q5_1", kQK, 24},
    {GgmlType::Q8_0, "Q8_0", kQK, 34},
    {GgmlType::Q2_K, "Q2_K", kQKK, 84},
    {GgmlType::Q3_K, "Q3_K", kQKK, 110},
    {GgmlType::Q4_K, "Q4_K", kQKK, 144},
    {GgmlType::Q5_K, "Q5_K", kQKK, 176},
    {GgmlType::Q6_K, "Q6_K", kQKK, 210},
}};

const Traits &traits(GgmlType t)
{
    for (const Traits &tr : kTraits)
        if (tr.type == t)
            return tr;
    return kTraits[0]; // unreachable for valid enum values
}

float h2f(const std::uint8_t *p)
{
    std::uint16_t h;
    std::memcpy(&h, p, 2);
    return halfToFloat(h);
}

void f2h(std::uint8_t *p, float f)
{
    const std::uint16_t h = floatToHalf(f);
    std::memcpy(p, &h, 2);
}

// fp16 rounding of a float (what storing it in a half does).
float roundHalf(float f)
{
    return halfToFloat(floatToHalf(f));
}

std::uint32_t readU32(const std::uint8_t *p)
{
    std::uint32_t v;
    std::memcpy(&v, p, 4);
    return v;
}

float finiteOrZero(float x)
{
    return std::isfinite(x) ? x : 0.0f;
}

// ---- 32-element blocks -------------------------------------------------------------------

// Low nibble / high nibble of element j of a 32-element block.
int nibble(const std::uint8_t *qs, int j)
{
    return j < 16 ? (qs[j] & 0x0F) : (qs[j - 16] >> 4);
}

void setNibbles(std::uint8_t *qs, const int *q)
{
    for (int j = 0; j < 16; ++j)
        qs[j] = static_cast<std::uint8_t>((q[j] & 0x0F) | ((q[j + 16] & 0x0F) << 4));
}

std::uint32_t highBits(const int *q)
{
    std::uint32_t qh = 0;
    for (int j = 0; j < 32; ++j)
        qh |= static_cast<std::uint32_t>((q[j] >> 4) & 1) << j;
    return qh;
}

void dequantBlock32(GgmlType t, const std::uint8_t *b, float *y)
{
    switch (t) {
    case GgmlType::Q4_0: {
        const float d = h2f(b);
        for (int j = 0; j < 32; ++j)
            y[j] = d * static_cast<float>(nibble(b + 2, j) - 8);
        break;
    }
    case GgmlType::Q4_1: {
        const float d = h2f(b), m = h2f(b + 2);
        for (int j = 0; j < 32; ++j)
            y[j] = d * static_cast<float>(nibble(b + 4, j)) + m;
        break;
    }
    case GgmlType::Q5_0: {
        const float d = h2f(b);
        const std::uint32_t qh = readU32(b + 2);
        for (int j = 0; j < 32; ++j)
            y[j] = d * static_cast<float>((nibble(b + 6, j) | static_cast<int>(((qh >> j) & 1) << 4)) - 16);
        break;
    }
    case GgmlType::Q5_1: {
        const float d = h2f(b), m = h2f(b + 2);
        const std::uint32_t qh = readU32(b + 4);
        for (int j = 0; j < 32; ++j)
            y[j] = d * static_cast<float>(nibble(b + 8, j) | static_cast<int>(((qh >> j) & 1) << 4)) + m;
        break;
    }
    case GgmlType::Q8_0: {
        const float d = h2f(b);
        for (int j = 0; j < 32; ++j)
            y[j] = d * static_cast<float>(static_cast<std::int8_t>(b[2 + j]));
        break;
    }
    default:
        break;
    }
}

// Round half away from zero (as C's roundf).
int roundAway(float x)
{
    return static_cast<int>(std::lround(x));
}

void quantBlock32(GgmlType t, const float *xin, std::uint8_t *b)
{
    float x[32];
    for (int j = 0; j < 32; ++j)
        x[j] = finiteOrZero(xin[j]);
    int q[32];
    switch (t) {
    case GgmlType::Q4_0:
    case GgmlType::Q5_0: {
        // Symmetric around the value of largest magnitude, which maps to the extreme level -8/-16.
        const int half = t == GgmlType::Q4_0 ? 8 : 16;
        float amax = 0.0f, vmax = 0.0f;
        for (float v : x)
            if (std::fabs(v) > amax) {
                amax = std::fabs(v);
                vmax = v;
            }
        const float d = roundHalf(vmax / static_cast<float>(-half));
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        for (int j = 0; j < 32; ++j)
            q[j] = std::clamp(roundAway(x[j] * id) + half, 0, 2 * half - 1);
        f2h(b, d);
        if (t == GgmlType::Q4_0) {
            setNibbles(b + 2, q);
        } else {
            const std::uint32_t qh = highBits(q);
            std::memcpy(b + 2, &qh, 4);
            setNibbles(b + 6, q);
        }
        break;
    }
    case GgmlType::Q4_1:
    case GgmlType::Q5_1: {
        const int nmax = t == GgmlType::Q4_1 ? 15 : 31;
        const float mn = *std::min_element(x, x + 32), mx = *std::max_element(x, x + 32);
        const float d = roundHalf((mx - mn) / static_cast<float>(nmax));
        const float m = roundHalf(mn);
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        for (int j = 0; j < 32; ++j)
            q[j] = std::clamp(roundAway((x[j] - m) * id), 0, nmax);
        f2h(b, d);
        f2h(b + 2, m);
        if (t == GgmlType::Q4_1) {
            setNibbles(b + 4, q);
        } else {
            const std::uint32_t qh = highBits(q);
            std::memcpy(b + 4, &qh, 4);
            setNibbles(b + 8, q);
        }
        break;
    }
    case GgmlType::Q8_0: {
        float amax = 0.0f;
        for (float v : x)
            amax = std::max(amax, std::fabs(v));
        const float d = roundHalf(amax / 127.0f);
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        f2h(b, d);
        for (int j = 0; j < 32; ++j)
            b[2 + j] = static_cast<std::uint8_t>(static_cast<std::int8_t>(std::clamp(roundAway(x[j] * id), -127, 127)));
        break;
    }
    default:
        break;
    }
}

// ---- k-quants: unpacking of the 6-bit scales -----------------------------------------------

// Q4_K / Q5_K: 8 6-bit scales and 8 6-bit mins in 12 bytes.
void unpackScaleMinK4(const std::uint8_t *s, int *sc, int *mn)
{
    for (int j = 0; j < 4; ++j) {
        sc[j] = s[j] & 0x3F;
        mn[j] = s[j + 4] & 0x3F;
        sc[j + 4] = (s[j + 8] & 0x0F) | ((s[j] >> 6) << 4);
        mn[j + 4] = (s[j + 8] >> 4) | ((s[j + 4] >> 6) << 4);
    }
}

void packScaleMinK4(std::uint8_t *s, const int *sc, const int *mn)
{
    for (int j = 0; j < 4; ++j) {
        s[j] = static_cast<std::uint8_t>((sc[j] & 0x3F) | ((sc[j + 4] >> 4) << 6));
        s[j + 4] = static_cast<std::uint8_t>((mn[j] & 0x3F) | ((mn[j + 4] >> 4) << 6));
        s[j + 8] = static_cast<std::uint8_t>((sc[j + 4] & 0x0F) | ((mn[j + 4] & 0x0F) << 4));
    }
}

// Q3_K: 16 6-bit scales (stored with +32) in 12 bytes: low nibbles in bytes 0..7 (scales 0..7 in
// the low nibbles, 8..15 in the high nibbles), high 2 bits in bytes 8..11.
void unpackScalesQ3K(const std::uint8_t *s, int *sc)
{
    for (int i = 0; i < 16; ++i) {
        const int low = (s[i % 8] >> (4 * (i / 8))) & 0x0F;
        const int high = (s[8 + i % 4] >> (2 * (i / 4))) & 0x03;
        sc[i] = (low | (high << 4)) - 32;
    }
}

void packScalesQ3K(std::uint8_t *s, const int *sc)
{
    std::memset(s, 0, 12);
    for (int i = 0; i < 16; ++i) {
        const int u = sc[i] + 32;
        s[i % 8] |= static_cast<std::uint8_t>((u & 0x0F) << (4 * (i / 8)));
        s[8 + i % 4] |= static_cast<std::uint8_t>(((u >> 4) & 0x03) << (2 * (i / 4)));
    }
}

// ---- k-quants: dequantization (element index e of the 256) ----------------------------------

void dequantBlockK(GgmlType t, const std::uint8_t *b, float *y)
{
    switch (t) {
    case GgmlType::Q2_K: {
        const std::uint8_t *scales = b, *qs = b + 16;
        const float d = h2f(b + 80), dmin = h2f(b + 82);
        for (int e = 0; e < 256; ++e) {
            const int half = e / 128, r = e % 128;
            const int q = (qs[half * 32 + r % 32] >> (2 * (r / 32))) & 3;
            const int s = scales[e / 16];
            y[e] = d * static_cast<float>(s & 0x0F) * static_cast<float>(q) - dmin * static_cast<float>(s >> 4);
        }
        break;
    }
    case GgmlType::Q3_K: {
        const std::uint8_t *hmask = b, *qs = b + 32;
        int sc[16];
        unpackScalesQ3K(b + 96, sc);
        const float d = h2f(b + 108);
        for (int e = 0; e < 256; ++e) {
            const int half = e / 128, r = e % 128;
            const int low = (qs[half * 32 + r % 32] >> (2 * (r / 32))) & 3;
            const int hbit = (hmask[e % 32] >> (e / 32)) & 1;
            const int q = low - (hbit ? 0 : 4);
            y[e] = d * static_cast<float>(sc[e / 16]) * static_cast<float>(q);
        }
        break;
    }
    case GgmlType::Q4_K:
    case GgmlType::Q5_K: {
        const float d = h2f(b), dmin = h2f(b + 2);
        int sc[8], mn[8];
        unpackScaleMinK4(b + 4, sc, mn);
        const bool five = t == GgmlType::Q5_K;
        const std::uint8_t *qh = b + 16;
        const std::uint8_t *qs = five ? b + 48 : b + 16;
        for (int e = 0; e < 256; ++e) {
            const int chunk = e / 64, r = e % 64;
            int q = (qs[chunk * 32 + r % 32] >> (4 * (r / 32))) & 0x0F;
            if (five)
                q |= ((qh[e % 32] >> (e / 32)) & 1) << 4;
            const int sb = e / 32;
            y[e] = d * static_cast<float>(sc[sb]) * static_cast<float>(q) - dmin * static_cast<float>(mn[sb]);
        }
        break;
    }
    case GgmlType::Q6_K: {
        const std::uint8_t *ql = b, *qh = b + 128;
        const auto *sc = reinterpret_cast<const std::int8_t *>(b + 192);
        const float d = h2f(b + 208);
        for (int e = 0; e < 256; ++e) {
            const int half = e / 128, r = e % 128;
            const int low = (ql[half * 64 + r % 64] >> (4 * (r / 64))) & 0x0F;
            const int high = (qh[half * 32 + r % 32] >> (2 * (r / 32))) & 0x03;
            const int q = (low | (high << 4)) - 32;
            y[e] = d * static_cast<float>(sc[e / 16]) * static_cast<float>(q);
        }
        break;
    }
    default:
        break;
    }
}

// ---- k-quants: quantization ------------------------------------------------------------------

// Fits y = s*q - m (q in 0..nmax, s >= 0, m >= 0) to n values by alternating rounding and a
// least-squares solve of (s, m) for fixed q, starting from the min/max fit.
void fitAffine(const float *x, int n, int nmax, float &s, float &m)
{
    float lo = std::min(0.0f, *std::min_element(x, x + n));
    const float hi = *std::max_element(x, x + n);
    if (hi <= lo) {
        s = 0.0f;
        m = -lo;
        return;
    }
    s = (hi - lo) / static_cast<float>(nmax);
    m = -lo;
    auto sse = [&](float ss, float mm) {
        double e = 0.0;
        for (int i = 0; i < n; ++i) {
            const int q = ss > 0 ? std::clamp(roundAway((x[i] + mm) / ss), 0, nmax) : 0;
            const double diff = static_cast<double>(ss) * q - mm - x[i];
            e += diff * diff;
        }
        return e;
    };
    double best = sse(s, m);
    for (int it = 0; it < 4; ++it) {
        // least squares for fixed q: minimize sum (s*q_i - m - x_i)^2
        double sq = 0, sqq = 0, sx = 0, sqx = 0;
        for (int i = 0; i < n; ++i) {
            const int q = std::clamp(roundAway((x[i] + m) / s), 0, nmax);
            sq += q;
            sqq += static_cast<double>(q) * q;
            sx += x[i];
            sqx += q * static_cast<double>(x[i]);
        }
        const double det = n * sqq - sq * sq;
        if (det <= 0)
            break;
        double ns = (n * sqx - sq * sx) / det;
        double nm = (ns * sq - sx) / n;
        if (nm < 0) { // the offset must stay >= 0: refit s with m = 0
            nm = 0;
            ns = sqq > 0 ? sqx / sqq : 0;
        }
        if (ns <= 0)
            break;
        const double e = sse(static_cast<float>(ns), static_cast<float>(nm));
        if (e >= best)
            break;
        best = e;
        s = static_cast<float>(ns);
        m = static_cast<float>(nm);
    }
}

// Symmetric fit y = s*q, q in [-nneg, nneg-1]: the scale maps the value of largest magnitude to
// -nneg, with a small search around it.
float fitSymmetric(const float *x, int n, int nneg)
{
    float amax = 0.0f, vmax = 0.0f;
    for (int i = 0; i < n; ++i)
        if (std::fabs(x[i]) > amax) {
            amax = std::fabs(x[i]);
            vmax = x[i];
        }
    if (amax == 0.0f)
        return 0.0f;
    float bestS = vmax / static_cast<float>(-nneg);
    double best = 1e300;
    for (int k = -4; k <= 6; ++k) {
        const float s = vmax / (static_cast<float>(-nneg) + 0.1f * static_cast<float>(k));
        double e = 0.0;
        for (int i = 0; i < n; ++i) {
            const int q = std::clamp(roundAway(x[i] / s), -nneg, nneg - 1);
            const double diff = static_cast<double>(s) * q - x[i];
            e += diff * diff;
        }
        if (e < best) {
            best = e;
            bestS = s;
        }
    }
    return bestS;
}

void quantBlockK(GgmlType t, const float *xin, std::uint8_t *b)
{
    float x[256];
    for (int i = 0; i < 256; ++i)
        x[i] = finiteOrZero(xin[i]);
    switch (t) {
    case GgmlType::Q2_K:
    case GgmlType::Q4_K:
    case GgmlType::Q5_K: {
        const bool q2 = t == GgmlType::Q2_K;
        const int sub = q2 ? 16 : 32, nsub = 256 / sub;
        const int nmax = q2 ? 3 : (t == GgmlType::Q4_K ? 15 : 31);
        const int scaleMax = q2 ? 15 : 63;
        float s[16], m[16];
        float smax = 0.0f, mmax = 0.0f;
        for (int j = 0; j < nsub; ++j) {
            fitAffine(x + j * sub, sub, nmax, s[j], m[j]);
            smax = std::max(smax, s[j]);
            mmax = std::max(mmax, m[j]);
        }
        const float d = roundHalf(smax / static_cast<float>(scaleMax));
        const float dmin = roundHalf(mmax / static_cast<float>(scaleMax));
        int sc[16], mn[16];
        for (int j = 0; j < nsub; ++j) {
            sc[j] = d > 0 ? std::clamp(roundAway(s[j] / d), 0, scaleMax) : 0;
            mn[j] = dmin > 0 ? std::clamp(roundAway(m[j] / dmin), 0, scaleMax) : 0;
        }
        int q[256];
        for (int e = 0; e < 256; ++e) {
            const int j = e / sub;
            const float ds = d * static_cast<float>(sc[j]), dm = dmin * static_cast<float>(mn[j]);
            q[e] = ds > 0 ? std::clamp(roundAway((x[e] + dm) / ds), 0, nmax) : 0;
        }
        if (q2) {
            for (int j = 0; j < 16; ++j)
                b[j] = static_cast<std::uint8_t>(sc[j] | (mn[j] << 4));
            std::uint8_t *qs = b + 16;
            std::memset(qs, 0, 64);
            for (int e = 0; e < 256; ++e) {
                const int half = e / 128, r = e % 128;
                qs[half * 32 + r % 32] |= static_cast<std::uint8_t>(q[e] << (2 * (r / 32)));
            }
            f2h(b + 80, d);
            f2h(b + 82, dmin);
        } else {
            f2h(b, d);
            f2h(b + 2, dmin);
            packScaleMinK4(b + 4, sc, mn);
            const bool five = t == GgmlType::Q5_K;
            std::uint8_t *qh = b + 16;
            std::uint8_t *qs = five ? b + 48 : b + 16;
            std::memset(b + 16, 0, five ? 160 : 128);
            for (int e = 0; e < 256; ++e) {
                const int chunk = e / 64, r = e % 64;
                qs[chunk * 32 + r % 32] |= static_cast<std::uint8_t>((q[e] & 0x0F) << (4 * (r / 32)));
                if (five)
                    qh[e % 32] |= static_cast<std::uint8_t>(((q[e] >> 4) & 1) << (e / 32));
            }
        }
        break;
    }
    case GgmlType::Q3_K:
    case GgmlType::Q6_K: {
        const bool q6 = t == GgmlType::Q6_K;
        const int nneg = q6 ? 32 : 4;
        // Sub-block scales are signed integers: int8 for Q6_K, 6-bit (-32..31) for Q3_K.
        const int scNeg = q6 ? 128 : 32;
        float s[16];
        float amaxS = 0.0f, vmaxS = 0.0f;
        for (int j = 0; j < 16; ++j) {
            s[j] = fitSymmetric(x + j * 16, 16, nneg);
            if (std::fabs(s[j]) > amaxS) {
                amaxS = std::fabs(s[j]);
                vmaxS = s[j];
            }
        }
        const float d = roundHalf(vmaxS / static_cast<float>(-scNeg));
        int sc[16];
        for (int j = 0; j < 16; ++j)
            sc[j] = d != 0.0f ? std::clamp(roundAway(s[j] / d), -scNeg, scNeg - 1) : 0;
        int q[256];
        for (int e = 0; e < 256; ++e) {
            const float ds = d * static_cast<float>(sc[e / 16]);
            q[e] = ds != 0.0f ? std::clamp(roundAway(x[e] / ds), -nneg, nneg - 1) : 0;
        }
        if (q6) {
            std::uint8_t *ql = b, *qh = b + 128;
            std::memset(b, 0, 192);
            for (int e = 0; e < 256; ++e) {
                const int u = q[e] + 32;
                const int half = e / 128, r = e % 128;
                ql[half * 64 + r % 64] |= static_cast<std::uint8_t>((u & 0x0F) << (4 * (r / 64)));
                qh[half * 32 + r % 32] |= static_cast<std::uint8_t>(((u >> 4) & 0x03) << (2 * (r / 32)));
            }
            for (int j = 0; j < 16; ++j)
                b[192 + j] = static_cast<std::uint8_t>(static_cast<std::int8_t>(sc[j]));
            f2h(b + 208, d);
        } else {
            std::uint8_t *hmask = b, *qs = b + 32;
            std::memset(b, 0, 96);
            for (int e = 0; e < 256; ++e) {
                const int u = q[e] + 4; // 0..7: low 2 bits in qs, bit 2 in hmask
                const int half = e / 128, r = e % 128;
                qs[half * 32 + r % 32] |= static_cast<std::uint8_t>((u & 3) << (2 * (r / 32)));
                hmask[e % 32] |= static_cast<std::uint8_t>(((u >> 2) & 1) << (e / 32));
            }
            packScalesQ3K(b + 96, sc);
            f2h(b + 108, d);
        }
        break;
    }
    default:
        break;
    }
}

} // namespace

const std::vector<GgmlType> &supportedGgmlTypes()
{
    static const std::vector<GgmlType> all = [] {
        std::vector<GgmlType> v;
        for (const Traits &t : kTraits)
            v.push_back(t.type);
        return v;
    }();
    return all;
}

std::optional<GgmlType> ggmlTypeFromId(std::uint32_t id)
{
    for (const Traits &t : kTraits)
        if (static_cast<std::uint32_t>(t.type) == id)
            return t.type;
    return std::nullopt;
}

const char *ggmlTypeName(GgmlType t)
{
    return traits(t).name;
}

std::optional<GgmlType> ggmlTypeFromName(const QString &name)
{
    for (const Traits &t : kTraits)
        if (name.compare(QLatin1String(t.name), Qt::CaseInsensitive) == 0)
            return t.type;
    return std::nullopt;
}

int ggmlBlockSize(GgmlType t)
{
    return traits(t).blockSize;
}

int ggmlTypeSize(GgmlType t)
{
    return traits(t).typeSize;
}

std::int64_t ggmlBytes(GgmlType t, std::int64_t n)
{
    const Traits &tr = traits(t);
    if (n < 0 || n % tr.blockSize != 0)
        return -1;
    return n / tr.blockSize * tr.typeSize;
}

double ggmlBitsPerWeight(GgmlType t)
{
    const Traits &tr = traits(t);
    return 8.0 * tr.typeSize / tr.blockSize;
}

void dequantizeRow(GgmlType t, const std::uint8_t *src, float *dst, std::int64_t n)
{
    switch (t) {
    case GgmlType::F32:
        std::memcpy(dst, src, static_cast<std::size_t>(n) * 4);
        return;
    case GgmlType::F16:
        for (std::int64_t i = 0; i < n; ++i)
            dst[i] = h2f(src + 2 * i);
        return;
    case GgmlType::BF16:
        for (std::int64_t i = 0; i < n; ++i) {
            std::uint16_t h;
            std::memcpy(&h, src + 2 * i, 2);
            dst[i] = bf16ToFloat(h);
        }
        return;
    default:
        break;
    }
    const Traits &tr = traits(t);
    for (std::int64_t b = 0; b < n / tr.blockSize; ++b) {
        const std::uint8_t *blk = src + b * tr.typeSize;
        float *y = dst + b * tr.blockSize;
        if (tr.blockSize == kQK)
            dequantBlock32(t, blk, y);
        else
            dequantBlockK(t, blk, y);
    }
}

void quantizeRow(GgmlType t, const float *src, std::uint8_t *dst, std::int64_t n)
{
    switch (t) {
    case GgmlType::F32:
        std::memcpy(dst, src, static_cast<std::size_t>(n) * 4);
        return;
    case GgmlType::F16:
        for (std::int64_t i = 0; i < n; ++i)
            f2h(dst + 2 * i, src[i]);
        return;
    case GgmlType::BF16:
        for (std::int64_t i = 0; i < n; ++i) {
            const std::uint16_t h = floatToBf16(src[i]);
            std::memcpy(dst + 2 * i, &h, 2);
        }
        return;
    default:
        break;
    }
    const Traits &tr = traits(t);
    for (std::int64_t b = 0; b < n / tr.blockSize; ++b) {
        const float *x = src + b * tr.blockSize;
        std::uint8_t *blk = dst + b * tr.typeSize;
        if (tr.blockSize == kQK)
            quantBlock32(t, x, blk);
        else
            quantBlockK(t, x, blk);
    }
}

std::optional<GgmlType> exactBlockType(const QuantFormat &f)
{
    if (f.groupSize != kQK)
        return std::nullopt;
    if (f.symmetric) {
        if (f.bits == 4)
            return GgmlType::Q4_0;
        if (f.bits == 5)
            return GgmlType::Q5_0;
        if (f.bits == 8)
            return GgmlType::Q8_0;
        return std::nullopt;
    }
    if (f.bits == 4)
        return GgmlType::Q4_1;
    if (f.bits == 5)
        return GgmlType::Q5_1;
    return std::nullopt;
}

Expected<std::vector<std::uint8_t>> encodeQuantized(const QuantizedTensor &q, GgmlType type, EncodeStats *stats)
{
    if (exactBlockType(q.format) != type)
        return unexpected(fail(ErrorCode::Unsupported, QStringLiteral("format %1-bit g%2%3 is not stored by %4")
                                                           .arg(q.format.bits)
                                                           .arg(q.format.groupSize)
                                                           .arg(q.format.symmetric ? QStringLiteral(" sym") : QString())
                                                           .arg(QLatin1String(ggmlTypeName(type)))));
    if (!q.groupIndex.empty())
        return unexpected(fail(ErrorCode::Unsupported, QStringLiteral("act-order group index cannot be stored in GGUF blocks"))
                              .withHint(QStringLiteral("the exporter requantizes such layers")));
    if (q.cols % kQK != 0 || q.rows <= 0)
        return unexpected(fail(ErrorCode::Unsupported, QStringLiteral("%1 columns are not a multiple of 32").arg(q.cols)));
    const int typeSize = ggmlTypeSize(type);
    const std::int64_t blocksPerRow = q.cols / kQK;
    std::vector<std::uint8_t> out(static_cast<std::size_t>(q.rows * blocksPerRow * typeSize));
    EncodeStats st;
    const bool withMin = type == GgmlType::Q4_1 || type == GgmlType::Q5_1;
    const int symZero = 1 << (q.format.bits - 1);
    for (std::int64_t r = 0; r < q.rows; ++r) {
        for (std::int64_t g = 0; g < blocksPerRow; ++g) {
            std::uint8_t *b = out.data() + (r * blocksPerRow + g) * typeSize;
            const float scale = q.scale(r, g);
            const float zero = q.zero(r, g);
            const float d = roundHalf(scale);
            bool exact = d == scale;
            double dev = std::fabs(static_cast<double>(d) - scale) * q.format.maxCode();
            int codes[32];
            for (int j = 0; j < 32; ++j)
                codes[j] = q.codes[static_cast<std::size_t>(r * q.cols + g * kQK + j)];
            f2h(b, d);
            if (withMin) {
                const double mExact = -static_cast<double>(scale) * zero;
                const float m = roundHalf(static_cast<float>(mExact));
                if (static_cast<double>(m) != mExact)
                    exact = false;
                dev += std::fabs(static_cast<double>(m) - mExact);
                f2h(b + 2, m);
                if (type == GgmlType::Q4_1) {
                    setNibbles(b + 4, codes);
                } else {
                    const std::uint32_t qh = highBits(codes);
                    std::memcpy(b + 4, &qh, 4);
                    setNibbles(b + 8, codes);
                }
            } else {
                if (zero != static_cast<float>(symZero))
                    return unexpected(fail(ErrorCode::Unsupported, QStringLiteral("symmetric zero point %1 is not %2").arg(zero).arg(symZero)));
                if (type == GgmlType::Q4_0) {
                    setNibbles(b + 2, codes);
                } else if (type == GgmlType::Q5_0) {
                    const std::uint32_t qh = highBits(codes);
                    std::memcpy(b + 2, &qh, 4);
                    setNibbles(b + 6, codes);
                } else { // Q8_0: int8 = code - 128
                    for (int j = 0; j < 32; ++j)
                        b[2 + j] = static_cast<std::uint8_t>(static_cast<std::int8_t>(codes[j] - 128));
                }
            }
            ++st.groups;
            if (!exact)
                ++st.inexactGroups;
            st.maxAbsDeviation = std::max(st.maxAbsDeviation, dev);
        }
    }
    if (stats)
        *stats = st;
    return out;
}

std::optional<QuantizedTensor> decodeToQuantized(GgmlType type, const std::uint8_t *src, std::int64_t rows, std::int64_t cols)
{
    QuantizedTensor q;
    q.rows = rows;
    q.cols = cols;
    q.format.groupSize = kQK;
    switch (type) {
    case GgmlType::Q4_0: q.format.bits = 4; q.format.symmetric = true; break;
    case GgmlType::Q5_0: q.format.bits = 5; q.format.symmetric = true; break;
    case GgmlType::Q8_0: q.format.bits = 8; q.format.symmetric = true; break;
    case GgmlType::Q4_1: q.format.bits = 4; q.format.symmetric = false; break;
    case GgmlType::Q5_1: q.format.bits = 5; q.format.symmetric = false; break;
    default: return std::nullopt;
    }
    if (cols % kQK != 0 || rows <= 0)
        return std::nullopt;
    const int typeSize = ggmlTypeSize(type);
    const std::int64_t blocksPerRow = cols / kQK;
    q.codes.resize(static_cast<std::size_t>(rows * cols));
    q.scales.resize(static_cast<std::size_t>(rows * blocksPerRow));
    if (!q.format.symmetric)
        q.zeros.resize(q.scales.size());
    for (std::int64_t blk = 0; blk < rows * blocksPerRow; ++blk) {
        const std::uint8_t *b = src + blk * typeSize;
        const float d = h2f(b);
        if (!(d >= 0.0f) || !std::isfinite(d))
            return std::nullopt;
        q.scales[static_cast<std::size_t>(blk)] = d;
        std::uint8_t *codes = q.codes.data() + blk * kQK; // blocks are consecutive along rows
        switch (type) {
        case GgmlType::Q4_0:
            for (int j = 0; j < 32; ++j)
                codes[j] = static_cast<std::uint8_t>(nibble(b + 2, j));
            break;
        case GgmlType::Q5_0: {
            const std::uint32_t qh = readU32(b + 2);
            for (int j = 0; j < 32; ++j)
                codes[j] = static_cast<std::uint8_t>(nibble(b + 6, j) | (((qh >> j) & 1) << 4));
            break;
        }
        case GgmlType::Q8_0:
            for (int j = 0; j < 32; ++j)
                codes[j] = static_cast<std::uint8_t>(static_cast<std::int8_t>(b[2 + j]) + 128);
            break;
        default: {
            const float m = h2f(b + 2);
            float zero = 0.0f;
            if (d == 0.0f) {
                if (m != 0.0f)
                    return std::nullopt;
            } else {
                zero = std::nearbyint(-m / d);
                if (zero < 0.0f || zero > static_cast<float>(q.format.maxCode()) || -d * zero != m)
                    return std::nullopt;
            }
            q.zeros[static_cast<std::size_t>(blk)] = zero;
            if (type == GgmlType::Q4_1) {
                for (int j = 0; j < 32; ++j)
                    codes[j] = static_cast<std::uint8_t>(nibble(b + 4, j));
            } else {
                const std::uint32_t qh = readU32(b + 4);
                for (int j = 0; j < 32; ++j)
                    codes[j] = static_cast<std::uint8_t>(nibble(b + 8, j) | (((qh >> j) & 1) << 4));
            }
            break;
        }
        }
    }
    return q;
}

} // namespace bitsmith::core::gguf

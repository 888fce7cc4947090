// packedweights.cpp: packing QuantizedTensor codes into per-row little-endian bit-streams (and
// back), with validation so that a corrupt compressed folder fails here instead of in a kernel.
#include "packedweights.h"

#include <algorithm>
#include <numeric>

namespace bitsmith::core {

namespace {

std::int64_t rowBytesFor(std::int64_t cols, int bits)
{
    return (cols * bits + 7) / 8;
}

std::int64_t groupsFor(std::int64_t cols, const QuantFormat &f)
{
    return f.groupSize > 0 ? (cols + f.groupSize - 1) / f.groupSize : 1;
}

// Checks what pack() and fromPacked() share; returns an empty message when all is well.
QString checkParts(std::int64_t rows, std::int64_t cols, const QuantFormat &f, const std::vector<float> &scales,
                   const std::vector<float> &zeros, const std::vector<std::int32_t> &groupIndex)
{
    if (f.bits < 2 || f.bits > 8)
        return QStringLiteral("bits must be 2..8, got %1").arg(f.bits);
    if (f.groupSize < -1)
        return QStringLiteral("group size must be > 0, 0 (per channel) or -1 (per tensor), got %1").arg(f.groupSize);
    if (rows < 0 || cols < 0)
        return QStringLiteral("negative shape %1 x %2").arg(rows).arg(cols);
    const auto groups = static_cast<std::size_t>(rows * groupsFor(cols, f));
    if (scales.size() != groups)
        return QStringLiteral("%1 scales for %2 groups").arg(scales.size()).arg(groups);
    if (!(zeros.empty() && f.symmetric) && zeros.size() != groups)
        return QStringLiteral("%1 zeros for %2 groups").arg(zeros.size()).arg(groups);
    const float maxCode = static_cast<float>(f.maxCode());
    for (float z : zeros)
        if (!(z >= 0.0f && z <= maxCode) || z != static_cast<float>(static_cast<int>(z)))
            return QStringLiteral("zero point %1 is not an integer in [0, %2]").arg(z).arg(f.maxCode());
    if (!groupIndex.empty()) {
        if (groupIndex.size() != static_cast<std::size_t>(cols))
            return QStringLiteral("group index has %1 entries for %2 columns").arg(groupIndex.size()).arg(cols);
        const std::int64_t g = groupsFor(cols, f);
        for (std::int32_t v : groupIndex)
            if (v < 0 || v >= g)
                return QStringLiteral("group index entry %1 outside [0, %2)").arg(v).arg(g);
    }
    return {};
}

} // namespace

void PackedWeights::buildColumnOrder()
{
    m_columnOrder.clear();
    m_runs.clear();
    if (m_cols == 0)
        return;
    if (!m_groupIndex.empty()) {
        m_columnOrder.resize(static_cast<std::size_t>(m_cols));
        std::iota(m_columnOrder.begin(), m_columnOrder.end(), 0);
        std::stable_sort(m_columnOrder.begin(), m_columnOrder.end(), [this](std::int32_t a, std::int32_t b) {
            return m_groupIndex[static_cast<std::size_t>(a)] < m_groupIndex[static_cast<std::size_t>(b)];
        });
        std::int64_t begin = 0;
        for (std::int64_t j = 1; j <= m_cols; ++j) {
            const std::int32_t g = m_groupIndex[static_cast<std::size_t>(m_columnOrder[static_cast<std::size_t>(begin)])];
            if (j == m_cols || m_groupIndex[static_cast<std::size_t>(m_columnOrder[static_cast<std::size_t>(j)])] != g) {
                m_runs.push_back({begin, j, g});
                begin = j;
            }
        }
        // An identity permutation (act-order that happens to be sorted) needs no gather of x.
        bool identity = true;
        for (std::int64_t j = 0; j < m_cols && identity; ++j)
            identity = m_columnOrder[static_cast<std::size_t>(j)] == j;
        if (identity)
            m_columnOrder.clear();
    } else if (m_format.groupSize > 0) {
        for (std::int64_t g = 0; g * m_format.groupSize < m_cols; ++g)
            m_runs.push_back({g * m_format.groupSize, std::min(m_cols, (g + 1) * m_format.groupSize),
                              static_cast<std::int32_t>(g)});
    } else {
        m_runs.push_back({0, m_cols, 0});
    }
}

Expected<PackedWeights> PackedWeights::pack(const QuantizedTensor &t)
{
    if (QString msg = checkParts(t.rows, t.cols, t.format, t.scales, t.zeros, t.groupIndex); !msg.isEmpty())
        return unexpected(fail(ErrorCode::InvalidArgument, QStringLiteral("cannot pack tensor: ") + msg));
    if (t.codes.size() != static_cast<std::size_t>(t.rows * t.cols))
        return unexpected(fail(ErrorCode::InvalidArgument,
                               QStringLiteral("cannot pack tensor: %1 codes for %2 x %3")
                                   .arg(t.codes.size())
                                   .arg(t.rows)
                                   .arg(t.cols)));
    PackedWeights p;
    p.m_rows = t.rows;
    p.m_cols = t.cols;
    p.m_format = t.format;
    p.m_groupsPerRow = groupsFor(t.cols, t.format);
    p.m_rowBytes = rowBytesFor(t.cols, t.format.bits);
    p.m_scales = t.scales;
    p.m_zeros = t.zeros;
    p.m_groupIndex = t.groupIndex;
    p.buildColumnOrder();

    const int bits = t.format.bits;
    const unsigned maxCode = static_cast<unsigned>(t.format.maxCode());
    p.m_codes.assign(static_cast<std::size_t>(p.m_rows * p.m_rowBytes + kTailPadding), 0);
    for (std::int64_t r = 0; r < t.rows; ++r) {
        const std::uint8_t *src = t.codes.data() + r * t.cols;
        std::uint8_t *dst = p.m_codes.data() + r * p.m_rowBytes;
        // Accumulate bits in a 64-bit buffer and flush whole bytes: simple and branch-light.
        std::uint64_t acc = 0;
        int filled = 0;
        for (std::int64_t j = 0; j < t.cols; ++j) {
            const unsigned c = src[p.m_columnOrder.empty() ? j : p.m_columnOrder[static_cast<std::size_t>(j)]];
            if (c > maxCode)
                return unexpected(fail(ErrorCode::InvalidArgument,
                                       QStringLiteral("cannot pack tensor: code %1 at (%2, %3) exceeds %4 bits")
                                           .arg(c)
                                           .arg(r)
                                           .arg(j)
                                           .arg(bits)));
            acc |= static_cast<std::uint64_t>(c) << filled;
            filled += bits;
            while (filled >= 8) {
                *dst++ = static_cast<std::uint8_t>(acc);
                acc >>= 8;
                filled -= 8;
            }
        }
        if (filled > 0)
            *dst = static_cast<std::uint8_t>(acc);
    }
    return p;
}

Expected<PackedWeights> PackedWeights::fromPacked(std::int64_t rows, std::int64_t cols, QuantFormat format,
                                                  std::span<const std::uint8_t> bytes, std::vector<float> scales,
                                                  std::vector<float> zeros, std::vector<std::int32_t> groupIndex)
{
    if (QString msg = checkParts(rows, cols, format, scales, zeros, groupIndex); !msg.isEmpty())
        return unexpected(fail(ErrorCode::Format, QStringLiteral("packed weights: ") + msg));
    const std::int64_t rowBytes = rowBytesFor(cols, format.bits);
    if (static_cast<std::int64_t>(bytes.size()) != rows * rowBytes)
        return unexpected(fail(ErrorCode::Format, QStringLiteral("packed weights: %1 code bytes, expected %2 "
                                                                 "(%3 rows x %4 bytes)")
                                                      .arg(bytes.size())
                                                      .arg(rows * rowBytes)
                                                      .arg(rows)
                                                      .arg(rowBytes)));
    PackedWeights p;
    p.m_rows = rows;
    p.m_cols = cols;
    p.m_format = format;
    p.m_groupsPerRow = groupsFor(cols, format);
    p.m_rowBytes = rowBytes;
    p.m_scales = std::move(scales);
    p.m_zeros = std::move(zeros);
    p.m_groupIndex = std::move(groupIndex);
    p.buildColumnOrder();
    p.m_codes.assign(static_cast<std::size_t>(rows * rowBytes + kTailPadding), 0);
    std::copy(bytes.begin(), bytes.end(), p.m_codes.begin());
    if (auto ok = p.checkPadding(); !ok)
        return unexpected(ok.error());
    return p;
}

Expected<void> PackedWeights::checkPadding() const
{
    const std::int64_t rows = m_rows, rowBytes = m_rowBytes, cols = m_cols;
    const QuantFormat &format = m_format;
    const std::uint8_t *codes = codesBase();
    // Padding bits at the end of a row must be zero: it keeps the encoding canonical, so the same
    // tensor always serialises to the same bytes (content hashes of compressed folders rely on it).
    const int tailBits = static_cast<int>(rowBytes * 8 - cols * format.bits);
    if (tailBits > 0) {
        const auto mask = static_cast<std::uint8_t>(0xFFu << (8 - tailBits));
        for (std::int64_t r = 0; r < rows; ++r)
            if (codes[static_cast<std::size_t>(r * rowBytes + rowBytes - 1)] & mask)
                return unexpected(fail(ErrorCode::Format,
                                       QStringLiteral("packed weights: non-zero padding bits at the end of row %1").arg(r)));
    }
    return {};
}

Expected<PackedWeights> PackedWeights::fromPackedInPlace(std::int64_t rows, std::int64_t cols, QuantFormat format,
                                                         std::span<const std::uint8_t> bytes, std::size_t readableAfter,
                                                         std::shared_ptr<const void> keepAlive, std::vector<float> scales,
                                                         std::vector<float> zeros, std::vector<std::int32_t> groupIndex)
{
    if (readableAfter < static_cast<std::size_t>(kTailPadding) || !keepAlive)
        return fromPacked(rows, cols, format, bytes, std::move(scales), std::move(zeros), std::move(groupIndex));
    if (QString msg = checkParts(rows, cols, format, scales, zeros, groupIndex); !msg.isEmpty())
        return unexpected(fail(ErrorCode::Format, QStringLiteral("packed weights: ") + msg));
    const std::int64_t rowBytes = rowBytesFor(cols, format.bits);
    if (bytes.size() != static_cast<std::size_t>(rows * rowBytes))
        return unexpected(fail(ErrorCode::Format, QStringLiteral("packed weights: %1 code bytes, expected %2 "
                                                                 "(%3 rows x %4 bytes)")
                                                      .arg(bytes.size())
                                                      .arg(rows * rowBytes)
                                                      .arg(rows)
                                                      .arg(rowBytes)));
    PackedWeights p;
    p.m_rows = rows;
    p.m_cols = cols;
    p.m_format = format;
    p.m_groupsPerRow = groupsFor(cols, format);
    p.m_rowBytes = rowBytes;
    p.m_scales = std::move(scales);
    p.m_zeros = std::move(zeros);
    p.m_groupIndex = std::move(groupIndex);
    p.buildColumnOrder();
    p.m_external = std::move(keepAlive);
    p.m_externalCodes = bytes.data();
    if (auto ok = p.checkPadding(); !ok)
        return unexpected(ok.error());
    return p;
}

void PackedWeights::dequantizeRows(std::int64_t r0, std::int64_t r1, float *out) const
{
    for (std::int64_t r = r0; r < r1; ++r) {
        float *dst = out + (r - r0) * m_cols;
        for (const GroupRun &run : m_runs) {
            const float s = scale(r, run.group), z = zeroPoint(r, run.group);
            for (std::int64_t j = run.begin; j < run.end; ++j) {
                const std::int64_t c = m_columnOrder.empty() ? j : m_columnOrder[static_cast<std::size_t>(j)];
                dst[c] = s * (static_cast<float>(code(r, j)) - z);
            }
        }
    }
}

double PackedWeights::zeroFraction() const
{
    if (m_rows * m_cols == 0)
        return 0.0;
    std::int64_t zeros = 0;
    for (std::int64_t r = 0; r < m_rows; ++r)
        for (const GroupRun &run : m_runs) {
            const float s = scale(r, run.group), z = zeroPoint(r, run.group);
            if (s == 0.0f) {
                zeros += run.end - run.begin;
                continue;
            }
            const int zc = static_cast<int>(z);
            if (static_cast<float>(zc) != z)
                continue;
            for (std::int64_t j = run.begin; j < run.end; ++j)
                zeros += code(r, j) == zc;
        }
    return static_cast<double>(zeros) / static_cast<double>(m_rows * m_cols);
}

std::int64_t PackedWeights::residentBytes() const
{
    return static_cast<std::int64_t>(m_codes.size() + 4 * (m_scales.size() + m_zeros.size() + m_groupIndex.size() +
                                                          m_columnOrder.size()) +
                                     sizeof(GroupRun) * m_runs.size());
}

QuantizedTensor PackedWeights::unpack() const
{
    QuantizedTensor t;
    t.rows = m_rows;
    t.cols = m_cols;
    t.format = m_format;
    t.scales = m_scales;
    t.zeros = m_zeros;
    t.groupIndex = m_groupIndex;
    t.codes.resize(static_cast<std::size_t>(m_rows * m_cols));
    for (std::int64_t r = 0; r < m_rows; ++r) {
        std::uint8_t *dst = t.codes.data() + r * m_cols;
        for (std::int64_t j = 0; j < m_cols; ++j)
            dst[m_columnOrder.empty() ? j : m_columnOrder[static_cast<std::size_t>(j)]] = static_cast<std::uint8_t>(code(r, j));
    }
    return t;
}

} // namespace bitsmith::core

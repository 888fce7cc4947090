// testutil.h: small helpers shared by the Qt Test suites (paths to test data, .npy reading).
#pragma once

#include "core/quant/quantizedtensor.h"

#include <QByteArray>
#include <QFile>
#include <QString>

#include <cstdint>
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

namespace bitsmith::test {

inline QString sourceDir() { return QStringLiteral(BITSMITH_SOURCE_DIR); }
inline QString testDataDir() { return QStringLiteral(BITSMITH_TEST_DATA_DIR); }
inline QString sharedDataDir() { return QStringLiteral(BITSMITH_SHARED_DATA_DIR); }
inline QString defaultModelDir() { return sourceDir() + QStringLiteral("/resources/models/default"); }

inline QByteArray readAll(const QString &path)
{
    QFile f(path);
    if (!f.open(QIODevice::ReadOnly))
        return {};
    return f.readAll();
}

// The .npy descr of the element types the tests read.
template<typename T>
constexpr const char *npyDescr();
template<>
constexpr const char *npyDescr<float>() { return "'<f4'"; }
template<>
constexpr const char *npyDescr<std::uint8_t>() { return "'|u1'"; }
template<>
constexpr const char *npyDescr<std::int32_t>() { return "'<i4'"; }

// Reads a C-order .npy file (version 1 or 2) of T (float32, uint8 or int32, little-endian).
// Returns false on any problem: wrong type, Fortran order, truncated data.
template<typename T>
bool readNpy(const QString &path, std::vector<T> &data, std::vector<long> &shape)
{
    const QByteArray bytes = readAll(path);
    if (bytes.size() < 10 || !bytes.startsWith("\x93NUMPY"))
        return false;
    const int major = static_cast<unsigned char>(bytes[6]);
    qsizetype headerLen = 0;
    qsizetype offset = 0;
    if (major == 1) {
        headerLen = static_cast<unsigned char>(bytes[8]) | (static_cast<unsigned char>(bytes[9]) << 8);
        offset = 10;
    } else {
        if (bytes.size() < 12)
            return false;
        headerLen = static_cast<unsigned char>(bytes[8]) | (static_cast<unsigned char>(bytes[9]) << 8)
                    | (static_cast<unsigned char>(bytes[10]) << 16)
                    | (static_cast<unsigned char>(bytes[11]) << 24);
        offset = 12;
    }
    const QByteArray header = bytes.mid(offset, headerLen);
    if (!header.contains(npyDescr<T>()) || header.contains("'fortran_order': True"))
        return false;
    const qsizetype open = header.indexOf("'shape': (");
    const qsizetype close = header.indexOf(')', open);
    if (open < 0 || close < 0)
        return false;
    shape.clear();
    long count = 1;
    for (const QByteArray &part : header.mid(open + 10, close - open - 10).split(',')) {
        const QByteArray t = part.trimmed();
        if (t.isEmpty())
            continue;
        shape.push_back(t.toLong());
        count *= shape.back();
    }
    const qsizetype dataOffset = offset + headerLen;
    if (bytes.size() - dataOffset < count * static_cast<qsizetype>(sizeof(T)))
        return false;
    data.resize(static_cast<size_t>(count));
    std::memcpy(data.data(), bytes.constData() + dataOffset, static_cast<size_t>(count) * sizeof(T));
    return true;
}

inline bool readNpyF32(const QString &path, std::vector<float> &data, std::vector<long> &shape)
{
    return readNpy(path, data, shape);
}

inline bool readNpyU8(const QString &path, std::vector<std::uint8_t> &data, std::vector<long> &shape)
{
    return readNpy(path, data, shape);
}

inline QString quantData(const QString &name)
{
    return testDataDir() + QStringLiteral("/quant/") + name;
}

// The f32 matrix a quantized tensor stands for.
inline std::vector<float> dequantized(const core::QuantizedTensor &t)
{
    std::vector<float> out(static_cast<std::size_t>(t.rows * t.cols));
    t.dequantize(out.data());
    return out;
}

// Largest |a[i] - b[i]| (the vectors have the same size).
inline float maxAbsDiff(const std::vector<float> &a, const std::vector<float> &b)
{
    float m = 0;
    for (size_t i = 0; i < a.size() && i < b.size(); ++i)
        m = std::max(m, std::fabs(a[i] - b[i]));
    return m;
}

} // namespace bitsmith::test

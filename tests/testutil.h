// testutil.h: small helpers shared by the Qt Test suites (paths to test data, .npy reading).
#pragma once

#include <QByteArray>
#include <QFile>
#include <QString>

#include <cstdint>
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

// Reads a little-endian float32 C-order .npy file (version 1 or 2). Returns false on any problem.
inline bool readNpyF32(const QString &path, std::vector<float> &data, std::vector<long> &shape)
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
    if (!header.contains("'<f4'") || header.contains("'fortran_order': True"))
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
    if (bytes.size() - dataOffset < count * 4)
        return false;
    data.resize(static_cast<size_t>(count));
    std::memcpy(data.data(), bytes.constData() + dataOffset, static_cast<size_t>(count) * 4);
    return true;
}

} // namespace bitsmith::test

// npy.cpp: the .npy v1.0 header ("\x93NUMPY", version, header length, dict, padded to 64 bytes).
#include "npy.h"

#include <QSaveFile>
#include <QStringList>

namespace bitsmith::core {

Expected<void> writeNpyF32(const QString &path, std::span<const float> data, const std::vector<std::int64_t> &shape)
{
    QStringList dims;
    std::int64_t count = 1;
    for (auto d : shape) {
        dims << QString::number(d);
        count *= d;
    }
    if (count != static_cast<std::int64_t>(data.size()))
        return unexpected(fail(ErrorCode::Mismatch, QStringLiteral("array data does not match its shape")).inFile(path));
    QString shapeText = dims.join(QStringLiteral(", "));
    if (shape.size() == 1)
        shapeText += QLatin1Char(',');
    QByteArray header = QStringLiteral("{'descr': '<f4', 'fortran_order': False, 'shape': (%1), }").arg(shapeText).toLatin1();
    const qsizetype total = 10 + header.size() + 1;
    header.append(QByteArray((64 - total % 64) % 64, ' '));
    header.append('\n');
    QByteArray prefix("\x93NUMPY\x01\x00", 8);
    prefix.append(static_cast<char>(header.size() & 0xFF));
    prefix.append(static_cast<char>((header.size() >> 8) & 0xFF));
    QSaveFile f(path);
    if (!f.open(QIODevice::WriteOnly))
        return unexpected(fail(ErrorCode::Io, QStringLiteral("cannot write: %1").arg(f.errorString())).inFile(path));
    f.write(prefix);
    f.write(header);
    f.write(reinterpret_cast<const char *>(data.data()), static_cast<qint64>(data.size_bytes()));
    if (!f.commit())
        return unexpected(fail(ErrorCode::Io, QStringLiteral("writing failed: %1").arg(f.errorString()))
                              .inFile(path)
                              .withHint(QStringLiteral("check free disk space")));
    return {};
}

} // namespace bitsmith::core

// outputfolder.cpp: staged model-folder writes (see outputfolder.h).
#include "core/outputfolder.h"

#include <QDir>
#include <QFile>
#include <QFileInfo>
#include <QJsonDocument>

namespace bitsmith::core {

Expected<StagedFolder> beginOutputFolder(const QString &outDir)
{
    StagedFolder f;
    f.finalDir = QDir(outDir).absolutePath();
    if (QFileInfo(f.finalDir).exists() && !QFileInfo(f.finalDir).isDir())
        return unexpected(fail(ErrorCode::Io, QStringLiteral("the output path exists and is not a folder")).inFile(f.finalDir));
    f.tmpDir = f.finalDir + QStringLiteral(".partial");
    QDir(f.tmpDir).removeRecursively();
    if (!QDir().mkpath(f.tmpDir))
        return unexpected(fail(ErrorCode::Io, QStringLiteral("cannot create the output folder")).inFile(f.tmpDir));
    return f;
}

Expected<void> finishOutputFolder(const StagedFolder &folder)
{
    if (QFileInfo::exists(folder.finalDir)) {
        const QString old = folder.finalDir + QStringLiteral(".old");
        QDir(old).removeRecursively();
        if (!QDir().rename(folder.finalDir, old))
            return unexpected(fail(ErrorCode::Io, QStringLiteral("cannot replace the existing output folder")).inFile(folder.finalDir));
        QDir(old).removeRecursively();
    }
    if (!QDir().rename(folder.tmpDir, folder.finalDir))
        return unexpected(fail(ErrorCode::Io, QStringLiteral("cannot move the finished model into place")).inFile(folder.finalDir));
    return {};
}

Expected<QJsonObject> readConfigJson(const QString &folder)
{
    QFile f(QDir(folder).filePath(QStringLiteral("config.json")));
    if (!f.open(QIODevice::ReadOnly))
        return unexpected(fail(ErrorCode::Io, QStringLiteral("cannot read the source config.json")).inFile(f.fileName()));
    QJsonParseError err{};
    const QJsonDocument doc = QJsonDocument::fromJson(f.readAll(), &err);
    if (err.error != QJsonParseError::NoError || !doc.isObject())
        return unexpected(fail(ErrorCode::Format, QStringLiteral("config.json is not a JSON object (%1)").arg(err.errorString()))
                              .inFile(f.fileName()));
    return doc.object();
}

} // namespace bitsmith::core

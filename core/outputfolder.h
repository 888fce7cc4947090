// outputfolder.h: writing a model folder so that a crash or a full disk never leaves a half-written
// folder where a good one was: everything goes to "<out>.partial", which replaces "<out>" only once
// complete. Shared by the compressed-model writer, structured pruning and distillation.
#pragma once

#include "core/error.h" // Expected

#include <QJsonObject>
#include <QString>

namespace bitsmith::core {

struct StagedFolder
{
    QString finalDir; // absolute path of the folder asked for
    QString tmpDir;   // finalDir + ".partial", created empty
};

// Creates the empty staging folder. Errors: the output path is a file, the folder cannot be made.
Expected<StagedFolder> beginOutputFolder(const QString &outDir);

// Moves the finished staging folder into place (an existing folder is replaced only now).
Expected<void> finishOutputFolder(const StagedFolder &folder);

// A model folder's config.json as an object. Errors name the file.
Expected<QJsonObject> readConfigJson(const QString &folder);

} // namespace bitsmith::core

// project.h: a Bitsmith project file — everything a tuning session needs to be reopened as it
// was: the model it is about, the current recipe, the named configurations saved along the way,
// the sensitivity results and the measured accuracy-vs-size points. Not GUI code: the CLI and
// tests read and write it through the same calls.
//
// Format: HDF5. When the project holds sensitivity results the file IS a valid experiment file
// (core/experiment.h writes its root attributes and /sensitivity), so `bitsmith-cli allocate
// PROJECT.bsproj` works on it; the project adds a group:
//   /project   attributes: magic = "bitsmith-project", schemaVersion
//              dataset state: uint8 [n], UTF-8 JSON {modelReference, recipe, savedConfigurations
//              [{name, recipe, bytes, bitsPerWeight, predicted, created}], measuredPoints [...],
//              hasSensitivity}
// (JSON in a dataset rather than an attribute: attributes are limited to 64 KiB and a recipe
// with an entry per layer of a large model is not.)
// Writes go to a temporary file next to the target which is renamed over it, so a crash or a
// full disk never damages the last good file.
#pragma once

#include "core/error.h"       // Expected
#include "core/recipe.h"      // Recipe
#include "core/sensitivity.h" // SensitivityResult

#include <QDateTime>
#include <QString>

#include <optional>
#include <vector>

namespace bitsmith::core {

constexpr int kProjectSchemaVersion = 1;

// A recipe kept under a name (the "history" of a session, independent of undo).
struct SavedConfiguration
{
    QString name;
    Recipe recipe;
    double bytes = 0;          // of the compressible layers under the recipe
    double bitsPerWeight = 0;  // effective, over those layers
    double predicted = 0;      // predicted cost (sum of per-layer sensitivities) when known
    QDateTime created;
};

// A configuration compressed for real and evaluated.
struct MeasuredPoint
{
    QString kind;  // "uniform", "frontier", "recipe", "saved"
    QString label; // "rtn:w4g128", "frontier 2", a saved configuration's name
    double bytes = 0;
    double bitsPerWeight = 0;
    double predicted = 0;  // predicted cost of the same configuration
    double kl = 0;         // measured mean KL from the original model (nats)
    double deltaLoss = 0;  // measured mean NLL increase
    double perplexity = 0;
    Recipe recipe;         // what was measured (so a click can load it)
};

struct Project
{
    QString modelReference; // a model folder, or "default"
    Recipe recipe;
    std::vector<SavedConfiguration> saved;
    std::optional<SensitivityResult> sensitivity;
    std::vector<MeasuredPoint> measured;
};

// Writes `project` to `path` atomically. Errors: Io naming the path.
Expected<void> saveProject(const Project &project, const QString &path);

// Reads a project. Errors: Io (missing / unreadable), Format (not HDF5, truncated, no project
// group, bad JSON: the message names the item), Unsupported (newer schema version).
Expected<Project> loadProject(const QString &path);

// Whether `path` is an HDF5 file with a /project group (cheap; no error details).
bool isProjectFile(const QString &path);

} // namespace bitsmith::core

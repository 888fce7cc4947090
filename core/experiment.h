// experiment.h: the HDF5 experiment file that keeps a sensitivity sweep (per layer × setting:
// bytes, Δloss, KL, perplexity and the proxies; the data and settings used), so it is computed
// once and reopened instantly by `allocate` / `frontier` or the GUI.
//
// Layout (schema version 1):
//   /                attributes: magic = "bitsmith-experiment", schemaVersion, modelHash,
//                    modelFolder, evalText, calibText, ctx, windows, calibSequences,
//                    calibLength, seed, baseLoss, basePerplexity, seconds, measureSeconds,
//                    naiveSecondsEstimate
//   /sensitivity     attributes: layers, settings (names / labels joined by '\n')
//                    datasets: parameters int64 [L]; bytes, deltaLoss, kl, perplexity,
//                    relativeError, hessianError, activationError float64 [L, S]
// Files are written to a temporary name next to the target and renamed over it, so a reader never
// sees a half-written experiment. HDF5's own error printing is silenced; failures become Error.
#pragma once

#include "core/error.h"       // Expected
#include "core/sensitivity.h" // SensitivityResult

#include <QString>

namespace bitsmith::core {

constexpr int kExperimentSchemaVersion = 2; // 2: Hutchinson trace + timings (1 still reads)

// Writes `result` to `path` atomically. Errors: Io (with the path) when it cannot be written.
Expected<void> saveSensitivityExperiment(const SensitivityResult &result, const QString &path);

// Reads an experiment. Errors: Io (missing / unreadable), Format (not HDF5, truncated, not a
// Bitsmith experiment, missing or inconsistent datasets: the message names the item),
// Unsupported (a newer schema version).
Expected<SensitivityResult> loadSensitivityExperiment(const QString &path);

} // namespace bitsmith::core

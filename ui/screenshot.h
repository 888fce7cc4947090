// screenshot.h: filling the workbench with real data for the bundled (or any) model and
// rendering it offscreen — what `bitsmith MODEL --screenshot FILE.png [--view NAME]` does for
// the README, the docs and the tests. Blocking helpers (nested event loops): batch use only.
#pragma once

#include "core/error.h"

#include <QImage>
#include <QSize>
#include <QString>

namespace bitsmith::ui {

class Job;
class MainWindow;

// Runs the job's event loop until `job` finishes (or `timeoutMs` passes). True when it succeeded.
bool waitForJob(Job *job, int timeoutMs = 600000);

// Brings the window to a state worth showing for `view` ("" = the whole window): a quick
// sensitivity sweep when the project has none, a fill to budget (a saved configuration at 4
// bits, the current recipe at 3.25), a selected layer, measured uniform and current points (for
// the frontier and the whole window), a "Try it" generation, and for the Jobs view a sweep left
// running. Errors: the first job that failed.
core::Expected<void> prepareScreenshot(MainWindow &window, const QString &view);

// Shows only `view` (or everything for ""), lets layouts and queued replots run, and grabs.
QImage renderScreenshot(MainWindow &window, const QString &view, QSize size);

} // namespace bitsmith::ui

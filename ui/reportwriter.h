// reportwriter.h: the self-contained HTML report of an experiment (issue 6, "Recipe and report"):
// model, data, recipe table, sensitivity heatmap and proxy map, proxy correlations, the
// accuracy-vs-size frontier with measured points, sizes and timings. The plots are the GUI's own
// views (SensitivityWidget, FrontierWidget) over a ProjectDocument, laid out offscreen and
// rendered to PNG, embedded as data: URIs so the one HTML file is all there is to share.
//
// Needs a QApplication (QCustomPlot is a QWidget); `bitsmith-cli export --format report` makes one
// on the offscreen platform when no display is set.
#pragma once

#include "core/error.h"    // Expected
#include "core/feedback.h" // Feedback

#include <QString>

namespace bitsmith::ui {

struct ReportOptions
{
    QString input;       // an experiment file or a project file (a project is also an experiment)
    // Optional: the model folder (or "default"), or a compressed folder (recipe.json +
    // report.json), whose recipe is then tabulated and whose report.json figures are listed.
    // Empty: the model the project / experiment names.
    QString model;
    // Without a recipe (an experiment file and no compressed folder): the exact allocation at this
    // budget of effective bits per weight is tabulated instead, and the report says so.
    double defaultBitsPerWeight = 4.5;
    int plotWidth = 1000;  // pixels of each plot
    int plotHeight = 700;
};

// What the report was made of (for the CLI's summary and the tests).
struct ReportSummary
{
    int layers = 0;
    int settings = 0;
    int frontierPoints = 0;
    int measuredPoints = 0;
    QString recipeSource; // "project", "compressed folder", "allocation at 4.50 bpw", ...
    qint64 htmlBytes = 0;
};

// Builds the HTML (all text escaped, images embedded). Errors: those of loading the input (Io,
// Format, Unsupported: the message names the file), of loading the model (with a hint naming
// --model), Format when the file holds no sensitivity results.
core::Expected<QString> renderReportHtml(const ReportOptions &options, ReportSummary *summary = nullptr,
                                         core::Feedback *feedback = nullptr);

// renderReportHtml() written atomically (QSaveFile) to `outPath`. Errors: the above, Io for the output.
core::Expected<ReportSummary> writeReport(const ReportOptions &options, const QString &outPath,
                                          core::Feedback *feedback = nullptr);

} // namespace bitsmith::ui

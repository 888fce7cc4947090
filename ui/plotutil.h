// plotutil.h: what every chart of the workbench shares: export to PNG / SVG / PDF (by the file
// name's suffix), a context menu offering it, and the light / dark colours.
#pragma once

#include <QString>

class QCustomPlot;

namespace bitsmith::ui {

// Writes the plot at its current size; the format follows the suffix (.png, .svg, .pdf).
// Returns false (and leaves no partial file) when it cannot be written.
bool exportPlot(QCustomPlot *plot, const QString &path);

// Right-click menu "Export as PNG/SVG/PDF…" on the plot.
void installExportMenu(QCustomPlot *plot);

// Background, axes, grid and text colours from the application palette (light or dark).
void applyPlotPalette(QCustomPlot *plot);

} // namespace bitsmith::ui

// frontierwidget.h: the Accuracy-vs-size view: the predicted Pareto frontier (exact allocator
// swept over the budget), the uniform-precision baselines, points measured for real (compressed
// and compared with the original), saved configurations as named points, and the current recipe
// as a marker that moves with every edit. Clicking a point loads its recipe (undoable).
#pragma once

#include "projectdocument.h"

#include <QPointF>
#include <QWidget>

class QCPGraph;
class QCPItemText;
class QCustomPlot;
class QCPAbstractPlottable;
class QCheckBox;
class QLabel;
class QLineEdit;

namespace bitsmith::ui {

class Job;
class JobManager;

class FrontierWidget : public QWidget
{
    Q_OBJECT

public:
    FrontierWidget(ProjectDocument *doc, JobManager *jobs, QWidget *parent = nullptr);

    QCustomPlot *plot() const { return m_plot; }
    // Where the current recipe's marker is (bits per weight, predicted cost); NaN when unknown.
    QPointF currentMarker() const;
    // Starts the frontier computation job (done automatically when sensitivity results arrive).
    Job *computeFrontier();
    // Measures the current recipe / every uniform baseline for real (a job).
    Job *measureCurrent();
    Job *measureUniform();
    // Loads the recipe of a point: series "frontier", "uniform", "measured", "saved".
    void activatePoint(const QString &series, int index);
    // The recipe giving every layer sensitivity setting `column`.
    core::Recipe uniformRecipe(int column) const;

private:
    void rebuild();
    void updateCurrent();
    void onPlottableClick(QCPAbstractPlottable *plottable, int dataIndex);
    void clearLabels();

    ProjectDocument *m_doc;
    JobManager *m_jobs;
    QCustomPlot *m_plot = nullptr;
    QCPGraph *m_frontier = nullptr;
    QCPGraph *m_uniform = nullptr;
    QCPGraph *m_measured = nullptr;
    QCPGraph *m_saved = nullptr;
    QCPGraph *m_current = nullptr;
    QCPItemText *m_currentLabel = nullptr;
    QList<QCPItemText *> m_labels;
    QCheckBox *m_logBox = nullptr;
    QLineEdit *m_nameEdit = nullptr;
    QLabel *m_info = nullptr;
    Job *m_frontierJob = nullptr;
    std::vector<int> m_uniformColumns; // data index -> sensitivity column
};

} // namespace bitsmith::ui

// inspectorwidget.h: the Layer inspector (for teaching): the selected layer's weight histogram
// with the quantization grid of its current setting overlaid (the levels of the group holding the
// largest weight, where an outlier stretches the grid), the distribution of the quantization
// error, per-output-channel ranges (outliers stand out), and before/after values of a slice of
// the matrix around the largest weight. Computed off the UI thread (quantizeRtn on that layer).
#pragma once

#include "projectdocument.h"

#include <QFutureWatcher>
#include <QWidget>

class QCustomPlot;
class QLabel;
class QTableWidget;

namespace bitsmith::ui {

struct InspectionData
{
    QString layer;
    QString setting;
    int rows = 0, cols = 0;
    double min = 0, max = 0;
    std::vector<double> histX, histY;       // weight histogram
    std::vector<double> errX, errY;         // error histogram (w' − w)
    std::vector<double> gridLevels;         // levels of the group holding the largest |w|
    std::vector<double> rowMin, rowMax;     // per output channel
    int sliceRow = 0, sliceCol = 0;
    std::vector<double> sliceBefore, sliceAfter; // 8 values of that row from sliceCol
    double relativeError = 0;               // ‖ΔW‖² / ‖W‖²
    double maxAbsError = 0;
    QString note;                           // e.g. "GPTQ shown as RTN's grid"
    QString error;
};

class InspectorWidget : public QWidget
{
    Q_OBJECT

public:
    explicit InspectorWidget(ProjectDocument *doc, QWidget *parent = nullptr);
    ~InspectorWidget() override;

    // Pure function used by the worker (and tests): the data shown for one layer and setting.
    static InspectionData inspect(const core::Model &model, const QString &layer, const core::LayerSetting &setting);

    bool isBusy() const { return m_watcher.isRunning() || m_pending; }
    const InspectionData &data() const { return m_data; }
    QCustomPlot *histogram() const { return m_hist; }

signals:
    void updated();

private:
    void request();
    void show(const InspectionData &d);

    ProjectDocument *m_doc;
    QLabel *m_title = nullptr;
    QCustomPlot *m_hist = nullptr;
    QCustomPlot *m_err = nullptr;
    QCustomPlot *m_ranges = nullptr;
    QTableWidget *m_slice = nullptr;
    QFutureWatcher<InspectionData> m_watcher;
    InspectionData m_data;
    bool m_pending = false;
};

} // namespace bitsmith::ui

// sensitivitywidget.h: the Sensitivity view: a heatmap of layers × candidate settings coloured
// by the chosen metric (Δloss, KL or perplexity; log scale optional), a second heatmap of a
// proxy beside it (relative error, Hessian-weighted, imatrix, Hutchinson trace when the results
// have it) so users can see how well it predicts, and a bar chart of the selected layer. Hover
// shows the figures; a click assigns that setting to that layer (undoable) and selects it.
#pragma once

#include "projectdocument.h"

#include <QWidget>

class QCheckBox;
class QComboBox;
class QCPColorMap;
class QCPColorScale;
class QCPGraph;
class QCPBars;
class QCPItemRect;
class QCustomPlot;
class QLabel;

namespace bitsmith::ui {

class SensitivityWidget : public QWidget
{
    Q_OBJECT

public:
    explicit SensitivityWidget(ProjectDocument *doc, QWidget *parent = nullptr);

    void setMetric(SensitivityMetric m);
    SensitivityMetric metric() const { return m_metric; }
    void setLogScale(bool on);
    void setProxy(SensitivityMetric m);

    QCustomPlot *heatmap() const { return m_heat; }
    QCustomPlot *proxyPlot() const { return m_proxyPlot; }
    QCustomPlot *barChart() const { return m_bars; }
    // Text of the tooltip for a cell (what hovering shows); empty outside the data.
    QString cellToolTip(int row, int column) const;
    // The cell under a widget position of the heatmap, or {-1, -1}.
    QPoint cellAt(const QPoint &pos) const;
    // Simulates a click on a cell: assigns its setting to its layer and selects the layer.
    void activateCell(int row, int column);

protected:
    void resizeEvent(QResizeEvent *event) override;

private:
    void rebuild();        // data changed: sensitivity or metric
    void updateMarkers();  // recipe or selection changed
    void updateBars();
    void fillMap(QCPColorMap *map, QCPColorScale *scale, SensitivityMetric m);

    ProjectDocument *m_doc;
    SensitivityMetric m_metric = SensitivityMetric::Kl;
    SensitivityMetric m_proxy = SensitivityMetric::HessianError;
    bool m_log = true;
    QComboBox *m_metricBox = nullptr;
    QComboBox *m_proxyBox = nullptr;
    QCheckBox *m_logBox = nullptr;
    QLabel *m_placeholder = nullptr;
    QLabel *m_info = nullptr;
    QCustomPlot *m_heat = nullptr;
    QCPColorMap *m_map = nullptr;
    QCPColorScale *m_scale = nullptr;
    QCPGraph *m_current = nullptr;  // markers: each layer's current setting
    QCPItemRect *m_selected = nullptr;
    QCustomPlot *m_proxyPlot = nullptr;
    QCPColorMap *m_proxyMap = nullptr;
    QCPColorScale *m_proxyScale = nullptr;
    QCustomPlot *m_bars = nullptr;
    QCPBars *m_barData = nullptr;
};

} // namespace bitsmith::ui

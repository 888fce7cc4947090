// inspectorwidget.cpp: statistics of one layer before/after quantization, and their charts.
#include "inspectorwidget.h"

#include "plotutil.h"

#include "core/quant/quantizer.h" // quantizeRtn

#include <QGridLayout>
#include <QHeaderView>
#include <QLabel>
#include <QTableWidget>
#include <QVBoxLayout>
#include <QtConcurrent/QtConcurrentRun>
#include <qcustomplot.h>

#include <algorithm>
#include <cmath>

namespace bitsmith::ui {

namespace {

void binValues(const std::vector<float> &v, double lo, double hi, int bins, std::vector<double> &x, std::vector<double> &y)
{
    x.assign(static_cast<std::size_t>(bins), 0.0);
    y.assign(static_cast<std::size_t>(bins), 0.0);
    const double width = (hi - lo) / bins;
    for (int b = 0; b < bins; ++b)
        x[static_cast<std::size_t>(b)] = lo + (b + 0.5) * width;
    if (width <= 0)
        return;
    for (float f : v) {
        const int b = std::clamp(static_cast<int>((f - lo) / width), 0, bins - 1);
        y[static_cast<std::size_t>(b)] += 1;
    }
}

QCustomPlot *makePlot(QWidget *parent, const QString &name, const QString &title)
{
    auto *p = new QCustomPlot(parent);
    p->setObjectName(name);
    p->setMinimumSize(150, 100);
    p->plotLayout()->insertRow(0);
    p->plotLayout()->addElement(0, 0, new QCPTextElement(p, title));
    installExportMenu(p);
    return p;
}

} // namespace

InspectionData InspectorWidget::inspect(const core::Model &model, const QString &layer, const core::LayerSetting &setting)
{
    InspectionData d;
    d.layer = layer;
    d.setting = setting.label();
    const core::MatrixView w = model.weight(layer + QStringLiteral(".weight"));
    if (w.empty()) {
        d.error = QStringLiteral("no weight %1").arg(layer);
        return d;
    }
    d.rows = static_cast<int>(w.rows);
    d.cols = static_cast<int>(w.cols);
    const std::size_t n = static_cast<std::size_t>(w.rows * w.cols);
    std::vector<float> values(w.data(), w.data() + n);
    const auto [mn, mx] = std::minmax_element(values.begin(), values.end());
    d.min = *mn;
    d.max = *mx;
    binValues(values, d.min, d.max, 120, d.histX, d.histY);
    d.rowMin.resize(static_cast<std::size_t>(w.rows));
    d.rowMax.resize(static_cast<std::size_t>(w.rows));
    std::size_t argmax = 0;
    for (std::int64_t r = 0; r < w.rows; ++r) {
        const float *row = w.data() + r * w.cols;
        const auto [a, b] = std::minmax_element(row, row + w.cols);
        d.rowMin[static_cast<std::size_t>(r)] = *a;
        d.rowMax[static_cast<std::size_t>(r)] = *b;
    }
    for (std::size_t i = 0; i < n; ++i)
        if (std::abs(values[i]) > std::abs(values[argmax]))
            argmax = i;
    d.sliceRow = static_cast<int>(static_cast<std::int64_t>(argmax) / w.cols);
    d.sliceCol = static_cast<int>(std::max<std::int64_t>(0, std::min<std::int64_t>(static_cast<std::int64_t>(argmax) % w.cols - 3, w.cols - 8)));
    const int sliceLen = static_cast<int>(std::min<std::int64_t>(8, w.cols));
    for (int c = 0; c < sliceLen; ++c)
        d.sliceBefore.push_back(w.data()[static_cast<std::int64_t>(d.sliceRow) * w.cols + d.sliceCol + c]);
    if (setting.dense) {
        d.sliceAfter = d.sliceBefore;
        d.note = QStringLiteral("dense: kept as stored");
        return d;
    }
    if (setting.technique != QLatin1String("rtn"))
        d.note = QStringLiteral("%1 moves weights between grid points; shown: the RTN grid of the same format").arg(setting.technique);
    auto q = core::quantizeRtn(w, setting.format);
    if (!q) {
        d.error = q.error().message;
        return d;
    }
    std::vector<float> deq(n);
    q->dequantize(deq.data());
    std::vector<float> err(n);
    double num = 0, den = 0;
    for (std::size_t i = 0; i < n; ++i) {
        err[i] = deq[i] - values[i];
        num += static_cast<double>(err[i]) * err[i];
        den += static_cast<double>(values[i]) * values[i];
        d.maxAbsError = std::max(d.maxAbsError, static_cast<double>(std::abs(err[i])));
    }
    d.relativeError = den > 0 ? num / den : 0;
    const double e = std::max(d.maxAbsError, 1e-12);
    binValues(err, -e, e, 80, d.errX, d.errY);
    const std::int64_t r = d.sliceRow, g = q->groupOf(static_cast<std::int64_t>(argmax) % w.cols);
    for (int code = 0; code <= setting.format.maxCode(); ++code)
        d.gridLevels.push_back(q->scale(r, g) * (static_cast<double>(code) - q->zero(r, g)));
    for (int c = 0; c < sliceLen; ++c)
        d.sliceAfter.push_back(deq[static_cast<std::size_t>(static_cast<std::int64_t>(d.sliceRow) * w.cols + d.sliceCol + c)]);
    return d;
}

InspectorWidget::InspectorWidget(ProjectDocument *doc, QWidget *parent)
    : QWidget(parent)
    , m_doc(doc)
{
    m_title = new QLabel(tr("Select a layer to inspect its weights."), this);
    m_title->setObjectName(QStringLiteral("inspectorTitle"));
    m_title->setWordWrap(true);
    m_title->setSizePolicy(QSizePolicy::Ignored, QSizePolicy::Preferred);
    m_hist = makePlot(this, QStringLiteral("inspectorHistogram"), tr("Weights and the quantization grid"));
    m_hist->setToolTip(tr("Histogram of all weights of the layer; vertical lines: the values the current setting can "
                          "represent in the group holding the largest weight. Few levels near zero = large error there."));
    m_err = makePlot(this, QStringLiteral("inspectorError"), tr("Quantization error w′ − w"));
    m_err->setToolTip(tr("Distribution of the rounding error; its width is about one grid step"));
    m_ranges = makePlot(this, QStringLiteral("inspectorRanges"), tr("Per output channel: min and max"));
    m_ranges->setToolTip(tr("Range of each output row: a row with a much larger range (outlier) forces a coarse grid "
                            "on its group"));
    m_slice = new QTableWidget(this);
    m_slice->setObjectName(QStringLiteral("inspectorSlice"));
    m_slice->setToolTip(tr("Values around the largest weight before (original) and after quantization"));
    m_slice->verticalHeader()->setDefaultSectionSize(m_slice->fontMetrics().height() + 4);
    // The histogram with its grid is the lesson: it gets the full width; the slice table is a
    // strip of three rows at the bottom.
    m_slice->setSizePolicy(QSizePolicy::Expanding, QSizePolicy::Fixed);
    m_slice->setFixedHeight(4 * (m_slice->fontMetrics().height() + 6) + 8);
    auto *grid = new QGridLayout;
    grid->addWidget(m_hist, 0, 0, 1, 2);
    grid->addWidget(m_ranges, 1, 0);
    grid->addWidget(m_err, 1, 1);
    grid->addWidget(m_slice, 2, 0, 1, 2);
    grid->setRowStretch(0, 3);
    grid->setRowStretch(1, 2);
    auto *layout = new QVBoxLayout(this);
    layout->setContentsMargins(4, 4, 4, 4);
    layout->addWidget(m_title);
    layout->addLayout(grid, 1);

    connect(&m_watcher, &QFutureWatcher<InspectionData>::finished, this, [this] {
        show(m_watcher.result());
        if (m_pending) {
            m_pending = false;
            request();
        }
    });
    connect(m_doc, &ProjectDocument::currentLayerChanged, this, &InspectorWidget::request);
    connect(m_doc, &ProjectDocument::recipeChanged, this, &InspectorWidget::request);
    connect(m_doc, &ProjectDocument::modelChanged, this, &InspectorWidget::request);
}

InspectorWidget::~InspectorWidget()
{
    m_watcher.waitForFinished();
}

void InspectorWidget::request()
{
    const int layer = m_doc->currentLayer();
    if (!m_doc->model() || layer < 0) {
        m_title->setText(tr("Select a layer to inspect its weights."));
        return;
    }
    if (m_watcher.isRunning()) { // one computation at a time; the latest request wins
        m_pending = true;
        return;
    }
    std::shared_ptr<const core::Model> model = m_doc->model();
    const QString name = m_doc->layers()[static_cast<std::size_t>(layer)].name;
    const core::LayerSetting setting = m_doc->setting(layer);
    m_watcher.setFuture(QtConcurrent::run([model, name, setting] { return inspect(*model, name, setting); }));
}

void InspectorWidget::show(const InspectionData &d)
{
    m_data = d;
    if (!d.error.isEmpty()) {
        m_title->setText(tr("%1: %2").arg(d.layer, d.error));
        emit updated();
        return;
    }
    QString title = tr("<b>%1</b> · %2 × %3 · setting <b>%4</b> · weights in [%5, %6]")
                        .arg(d.layer).arg(d.rows).arg(d.cols).arg(d.setting)
                        .arg(d.min, 0, 'g', 3).arg(d.max, 0, 'g', 3);
    if (!d.gridLevels.empty())
        title += tr(" · relative error %1 · max |error| %2").arg(d.relativeError, 0, 'g', 3).arg(d.maxAbsError, 0, 'g', 3);
    if (!d.note.isEmpty())
        title += QStringLiteral(" · <i>%1</i>").arg(d.note.toHtmlEscaped());
    m_title->setText(title);

    const QColor fg = palette().color(QPalette::Text);
    for (QCustomPlot *p : {m_hist, m_err, m_ranges}) {
        p->clearPlottables();
        p->clearItems();
        if (auto *t = qobject_cast<QCPTextElement *>(p->plotLayout()->element(0, 0)))
            t->setTextColor(fg);
    }
    auto bars = [](QCustomPlot *p, const std::vector<double> &x, const std::vector<double> &y, QColor c) {
        auto *b = new QCPBars(p->xAxis, p->yAxis);
        b->setData(QVector<double>(x.begin(), x.end()), QVector<double>(y.begin(), y.end()), true);
        b->setWidth(x.size() > 1 ? (x[1] - x[0]) : 1.0);
        b->setPen(Qt::NoPen);
        b->setBrush(c);
        p->rescaleAxes();
        p->yAxis->setRangeLower(0);
    };
    bars(m_hist, d.histX, d.histY, QColor(70, 130, 180));
    m_hist->xAxis->setLabel(tr("weight"));
    m_hist->yAxis->setLabel(tr("count"));
    for (double level : d.gridLevels) {
        auto *line = new QCPItemStraightLine(m_hist);
        line->point1->setCoords(level, 0);
        line->point2->setCoords(level, 1);
        line->setPen(QPen(QColor(231, 76, 60, d.gridLevels.size() > 64 ? 70 : 160), 1));
    }
    // The whole grid visible, and the weights: an outlier group's grid reaches far.
    if (!d.gridLevels.empty()) {
        const auto [lo, hi] = std::minmax_element(d.gridLevels.begin(), d.gridLevels.end());
        m_hist->xAxis->setRange(std::min(*lo, d.min) * 1.05, std::max(*hi, d.max) * 1.05);
    }
    bars(m_err, d.errX, d.errY, QColor(142, 68, 173));
    m_err->xAxis->setLabel(tr("error"));

    QVector<double> rows, lo, hi;
    for (std::size_t r = 0; r < d.rowMin.size(); ++r) {
        rows << static_cast<double>(r);
        lo << d.rowMin[r];
        hi << d.rowMax[r];
    }
    QCPGraph *gmax = m_ranges->addGraph();
    gmax->setData(rows, hi, true);
    gmax->setPen(QPen(QColor(39, 174, 96)));
    QCPGraph *gmin = m_ranges->addGraph();
    gmin->setData(rows, lo, true);
    gmin->setPen(QPen(QColor(211, 84, 0)));
    gmax->setChannelFillGraph(gmin);
    gmax->setBrush(QColor(39, 174, 96, 50));
    m_ranges->xAxis->setLabel(tr("output channel (row)"));
    m_ranges->rescaleAxes();

    m_slice->clear();
    m_slice->setRowCount(3);
    m_slice->setColumnCount(static_cast<int>(d.sliceBefore.size()));
    m_slice->setVerticalHeaderLabels({tr("original"), tr("quantized"), tr("error")});
    QStringList cols;
    for (std::size_t c = 0; c < d.sliceBefore.size(); ++c) {
        cols << QStringLiteral("[%1,%2]").arg(d.sliceRow).arg(d.sliceCol + static_cast<int>(c));
        const double a = d.sliceBefore[c], b = c < d.sliceAfter.size() ? d.sliceAfter[c] : a;
        m_slice->setItem(0, static_cast<int>(c), new QTableWidgetItem(QString::number(a, 'f', 4)));
        m_slice->setItem(1, static_cast<int>(c), new QTableWidgetItem(QString::number(b, 'f', 4)));
        m_slice->setItem(2, static_cast<int>(c), new QTableWidgetItem(QString::number(b - a, 'f', 4)));
    }
    m_slice->setHorizontalHeaderLabels(cols);
    m_slice->resizeColumnsToContents();
    for (QCustomPlot *p : {m_hist, m_err, m_ranges}) {
        applyPlotPalette(p);
        p->replot(QCustomPlot::rpQueuedReplot);
    }
    emit updated();
}

} // namespace bitsmith::ui

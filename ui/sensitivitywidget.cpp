// sensitivitywidget.cpp: QCustomPlot colour maps over the document's sensitivity results.
#include "sensitivitywidget.h"

#include "plotutil.h"

#include <QCheckBox>
#include <QComboBox>
#include <QHBoxLayout>
#include <QLabel>
#include <QMouseEvent>
#include <QSplitter>
#include <QTimer>
#include <QToolTip>
#include <QVBoxLayout>
#include <qcustomplot.h>

#include <cmath>
#include <limits>

namespace bitsmith::ui {

namespace {

// "model.layers.3.mlp.down_proj" -> "3 mlp.down": fits beside the heatmap.
QString shortLayerName(const QString &name)
{
    QString s = name;
    s.remove(QStringLiteral("model.layers."));
    s.replace(QStringLiteral(".self_attn."), QStringLiteral(" attn."));
    s.replace(QStringLiteral(".mlp."), QStringLiteral(" mlp."));
    s.replace(QStringLiteral(".block_sparse_moe."), QStringLiteral(" moe."));
    s.remove(QStringLiteral("_proj"));
    return s;
}

void setupMapPlot(QCustomPlot *plot, QCPColorMap *&map, QCPColorScale *&scale, const QString &label)
{
    plot->setMinimumSize(150, 120);
    plot->axisRect()->setupFullAxesBox(false);
    plot->xAxis2->setVisible(false);
    plot->yAxis2->setVisible(false);
    plot->yAxis->setRangeReversed(true); // layer 0 at the top, like the table
    map = new QCPColorMap(plot->xAxis, plot->yAxis);
    scale = new QCPColorScale(plot);
    plot->plotLayout()->addElement(0, 1, scale);
    scale->setType(QCPAxis::atRight);
    scale->axis()->setLabel(label);
    map->setColorScale(scale);
    map->setGradient(QCPColorGradient::gpHot);
    map->setInterpolate(false);
    auto *group = new QCPMarginGroup(plot);
    plot->axisRect()->setMarginGroup(QCP::msBottom | QCP::msTop, group);
    scale->setMarginGroup(QCP::msBottom | QCP::msTop, group);
    installExportMenu(plot);
}

} // namespace

SensitivityWidget::SensitivityWidget(ProjectDocument *doc, QWidget *parent)
    : QWidget(parent)
    , m_doc(doc)
{
    m_metricBox = new QComboBox(this);
    m_metricBox->setObjectName(QStringLiteral("sensitivityMetric"));
    for (SensitivityMetric m : {SensitivityMetric::Kl, SensitivityMetric::DeltaLoss, SensitivityMetric::Perplexity}) {
        m_metricBox->addItem(metricName(m), static_cast<int>(m));
        m_metricBox->setItemData(m_metricBox->count() - 1, metricDescription(m), Qt::ToolTipRole);
    }
    m_metricBox->setToolTip(tr("What the colour measures (measured by compressing one layer at a time)"));
    m_proxyBox = new QComboBox(this);
    m_proxyBox->setObjectName(QStringLiteral("sensitivityProxy"));
    m_logBox = new QCheckBox(tr("Log scale"), this);
    m_logBox->setChecked(true);
    m_logBox->setToolTip(tr("Logarithmic colour scale: sensitivities span orders of magnitude between 2 and 8 bits"));
    m_info = new QLabel(this);
    m_info->setObjectName(QStringLiteral("sensitivityInfo"));
    m_info->setSizePolicy(QSizePolicy::Ignored, QSizePolicy::Preferred);
    m_info->setAlignment(Qt::AlignRight | Qt::AlignVCenter);
    m_placeholder = new QLabel(tr("No sensitivity results yet: run Analysis → Run Sensitivity (Ctrl+R) or open a project "
                                  "or experiment file."), this);
    m_placeholder->setWordWrap(true);
    m_placeholder->setAlignment(Qt::AlignCenter);

    m_heat = new QCustomPlot(this);
    m_heat->setObjectName(QStringLiteral("sensitivityHeatmap"));
    setupMapPlot(m_heat, m_map, m_scale, metricName(m_metric));
    m_heat->setMouseTracking(true);
    m_current = m_heat->addGraph();
    m_current->setLineStyle(QCPGraph::lsNone);
    m_current->setScatterStyle(QCPScatterStyle(QCPScatterStyle::ssCircle, QPen(QColor(30, 120, 255), 1.5), QColor(255, 255, 255), 6));
    m_current->setName(tr("current setting"));
    m_selected = new QCPItemRect(m_heat);
    m_selected->setPen(QPen(QColor(30, 120, 255), 2));
    m_selected->setBrush(Qt::NoBrush);
    m_selected->setVisible(false);

    m_proxyPlot = new QCustomPlot(this);
    m_proxyPlot->setObjectName(QStringLiteral("proxyHeatmap"));
    setupMapPlot(m_proxyPlot, m_proxyMap, m_proxyScale, metricName(m_proxy));
    m_proxyMap->setGradient(QCPColorGradient::gpCold);
    m_proxyPlot->setToolTip(tr("A proxy needing no evaluation pass, beside the measured metric: where both agree, "
                               "the proxy predicts well"));

    m_bars = new QCustomPlot(this);
    m_bars->setObjectName(QStringLiteral("sensitivityBars"));
    m_bars->setMinimumHeight(90);
    m_bars->xAxis->grid()->setVisible(false);
    m_barData = new QCPBars(m_bars->xAxis, m_bars->yAxis);
    m_barData->setBrush(QColor(70, 130, 180));
    m_barData->setPen(Qt::NoPen);
    installExportMenu(m_bars);

    connect(m_metricBox, &QComboBox::currentIndexChanged, this,
            [this] { setMetric(static_cast<SensitivityMetric>(m_metricBox->currentData().toInt())); });
    connect(m_proxyBox, &QComboBox::currentIndexChanged, this, [this] {
        if (m_proxyBox->currentIndex() >= 0)
            setProxy(static_cast<SensitivityMetric>(m_proxyBox->currentData().toInt()));
    });
    connect(m_logBox, &QCheckBox::toggled, this, &SensitivityWidget::setLogScale);

    connect(m_heat, &QCustomPlot::mouseMove, this, [this](QMouseEvent *e) {
        const QPoint cell = cellAt(e->pos());
        const QString tip = cellToolTip(cell.y(), cell.x());
        if (tip.isEmpty())
            QToolTip::hideText();
        else
            QToolTip::showText(e->globalPosition().toPoint(), tip, m_heat);
    });
    connect(m_heat, &QCustomPlot::mousePress, this, [this](QMouseEvent *e) {
        if (e->button() != Qt::LeftButton)
            return;
        const QPoint cell = cellAt(e->pos());
        activateCell(cell.y(), cell.x());
    });
    connect(m_proxyPlot, &QCustomPlot::mousePress, this, [this](QMouseEvent *e) {
        const double y = m_proxyPlot->yAxis->pixelToCoord(e->pos().y());
        const int row = static_cast<int>(std::lround(y));
        if (m_doc->sensitivity() && row >= 0 && row < static_cast<int>(m_doc->sensitivity()->layers.size()))
            m_doc->selectLayer(m_doc->layerIndex(m_doc->sensitivity()->layers[static_cast<std::size_t>(row)]));
    });

    auto *controls = new QHBoxLayout;
    controls->addWidget(new QLabel(tr("Metric:"), this));
    controls->addWidget(m_metricBox);
    controls->addWidget(m_logBox);
    controls->addSpacing(12);
    controls->addWidget(new QLabel(tr("Proxy:"), this));
    controls->addWidget(m_proxyBox);
    controls->addWidget(m_info, 1);
    auto *maps = new QSplitter(Qt::Horizontal, this);
    maps->addWidget(m_heat);
    maps->addWidget(m_proxyPlot);
    maps->setStretchFactor(0, 3);
    maps->setStretchFactor(1, 2);
    auto *vertical = new QSplitter(Qt::Vertical, this);
    vertical->addWidget(maps);
    vertical->addWidget(m_bars);
    vertical->setStretchFactor(0, 4);
    vertical->setStretchFactor(1, 1);
    vertical->setSizes({3000, 1000}); // the heatmap gets most of the height
    maps->setSizes({3000, 2000});
    auto *layout = new QVBoxLayout(this);
    layout->setContentsMargins(4, 4, 4, 4);
    layout->addLayout(controls);
    layout->addWidget(m_placeholder);
    layout->addWidget(vertical, 1);

    connect(m_doc, &ProjectDocument::sensitivityChanged, this, &SensitivityWidget::rebuild);
    connect(m_doc, &ProjectDocument::modelChanged, this, &SensitivityWidget::rebuild);
    connect(m_doc, &ProjectDocument::recipeChanged, this, &SensitivityWidget::updateMarkers);
    connect(m_doc, &ProjectDocument::currentLayerChanged, this, [this] {
        updateMarkers();
        updateBars();
    });
    rebuild();
}

void SensitivityWidget::resizeEvent(QResizeEvent *event)
{
    QWidget::resizeEvent(event);
    // Row labels depend on the heatmap's height: lay out first, then re-label.
    QTimer::singleShot(0, this, [this] {
        if (m_doc->sensitivity() && m_heat->isVisible()) {
            m_heat->replot();
            rebuild();
        }
    });
}

void SensitivityWidget::setMetric(SensitivityMetric m)
{
    m_metric = m;
    const int i = m_metricBox->findData(static_cast<int>(m));
    if (i >= 0 && i != m_metricBox->currentIndex())
        m_metricBox->setCurrentIndex(i);
    rebuild();
}

void SensitivityWidget::setLogScale(bool on)
{
    m_log = on;
    if (m_logBox->isChecked() != on)
        m_logBox->setChecked(on);
    rebuild();
}

void SensitivityWidget::setProxy(SensitivityMetric m)
{
    m_proxy = m;
    rebuild();
}

void SensitivityWidget::fillMap(QCPColorMap *map, QCPColorScale *scale, SensitivityMetric m)
{
    const auto &r = *m_doc->sensitivity();
    const int L = static_cast<int>(r.layers.size()), S = static_cast<int>(r.settings.size());
    map->data()->setSize(S, L);
    map->data()->setRange(QCPRange(0, S - 1), QCPRange(0, L - 1));
    // On a log scale, values <= 0 (Δloss can dip below zero: noise) and missing ones are drawn
    // at a floor below the smallest positive value.
    double minPositive = std::numeric_limits<double>::infinity();
    double lo = std::numeric_limits<double>::infinity(), hi = -lo;
    for (int l = 0; l < L; ++l)
        for (int s = 0; s < S; ++s) {
            const double v = m_doc->sensitivityValue(m, l, s);
            if (!std::isfinite(v))
                continue;
            if (v > 0)
                minPositive = std::min(minPositive, v);
            lo = std::min(lo, v);
            hi = std::max(hi, v);
        }
    const double floor = std::isfinite(minPositive) ? minPositive / 2 : 1e-9;
    for (int l = 0; l < L; ++l)
        for (int s = 0; s < S; ++s) {
            double v = m_doc->sensitivityValue(m, l, s);
            if (!std::isfinite(v))
                v = m_log ? floor : lo;
            else if (m_log && v <= 0)
                v = floor;
            map->data()->setCell(s, l, v);
        }
    scale->setDataScaleType(m_log ? QCPAxis::stLogarithmic : QCPAxis::stLinear);
    if (m_log)
        scale->axis()->setTicker(QSharedPointer<QCPAxisTickerLog>(new QCPAxisTickerLog));
    else
        scale->axis()->setTicker(QSharedPointer<QCPAxisTicker>(new QCPAxisTicker));
    scale->axis()->setLabel(metricName(m));
    map->rescaleDataRange(true);
    if (m_log && std::isfinite(hi) && hi > 0)
        map->setDataRange(QCPRange(floor, hi));

    // Axes: settings along x, layers down y (every k-th labelled when there are many).
    QSharedPointer<QCPAxisTickerText> xt(new QCPAxisTickerText);
    for (int s = 0; s < S; ++s)
        xt->addTick(s, r.settings[static_cast<std::size_t>(s)].label());
    map->keyAxis()->setTicker(xt);
    // Rotated labels when the columns are narrower than a label.
    const int columnPixels = map->keyAxis()->axisRect()->width() / std::max(1, S);
    map->keyAxis()->setTickLabelRotation(columnPixels < 90 ? 35 : 0);
    map->keyAxis()->setRange(-0.5, S - 0.5);
    QSharedPointer<QCPAxisTickerText> yt(new QCPAxisTickerText);
    // Labels at least ~13 px apart at the plot's current height (re-done on resize).
    const int pixels = std::max(60, map->valueAxis()->axisRect()->height());
    const int step = std::max(1, static_cast<int>(std::ceil(13.0 * L / pixels)));
    for (int l = 0; l < L; l += step)
        yt->addTick(l, shortLayerName(r.layers[static_cast<std::size_t>(l)]));
    map->valueAxis()->setTicker(yt);
    map->valueAxis()->setRange(-0.5, L - 0.5);
    QFont f = map->valueAxis()->tickLabelFont();
    f.setPointSizeF(std::max(6.0, f.pointSizeF() - 1.5));
    map->valueAxis()->setTickLabelFont(f);
}

void SensitivityWidget::rebuild()
{
    const bool has = m_doc->sensitivity().has_value() && !m_doc->sensitivity()->layers.empty();
    m_placeholder->setVisible(!has);
    m_heat->setVisible(has);
    m_proxyPlot->setVisible(has);
    m_bars->setVisible(has);
    // The proxies on offer: the ones the results have (Hutchinson only if the lead's field exists).
    {
        const QSignalBlocker block(m_proxyBox);
        m_proxyBox->clear();
        for (SensitivityMetric m : {SensitivityMetric::HessianError, SensitivityMetric::ActivationError,
                                    SensitivityMetric::RelativeError, SensitivityMetric::Hutchinson}) {
            if (m == SensitivityMetric::Hutchinson && (!has || std::isnan(m_doc->sensitivityValue(m, 0, 0))))
                continue;
            m_proxyBox->addItem(metricName(m), static_cast<int>(m));
            m_proxyBox->setItemData(m_proxyBox->count() - 1, metricDescription(m), Qt::ToolTipRole);
        }
        const int i = m_proxyBox->findData(static_cast<int>(m_proxy));
        m_proxyBox->setCurrentIndex(i >= 0 ? i : 0);
    }
    m_metricBox->setToolTip(metricDescription(m_metric));
    m_heat->setToolTip(QString()); // cell tooltips come from mouseMove
    if (!has) {
        m_info->clear();
        return;
    }
    const auto &r = *m_doc->sensitivity();
    fillMap(m_map, m_scale, m_metric);
    fillMap(m_proxyMap, m_proxyScale, m_proxy);
    m_proxyPlot->yAxis->setTickLabels(false); // the same rows as the heatmap beside it
    m_info->setText(tr("%1 layers × %2 settings · base perplexity %3 · %4 windows × %5 tokens")
                        .arg(r.layers.size())
                        .arg(r.settings.size())
                        .arg(r.basePerplexity, 0, 'f', 2)
                        .arg(r.windows)
                        .arg(r.ctx));
    applyPlotPalette(m_heat);
    applyPlotPalette(m_proxyPlot);
    applyPlotPalette(m_bars);
    m_proxyPlot->replot(QCustomPlot::rpQueuedReplot);
    updateMarkers();
    updateBars();
}

void SensitivityWidget::updateMarkers()
{
    if (!m_doc->sensitivity())
        return;
    const auto &r = *m_doc->sensitivity();
    QVector<double> xs, ys;
    for (int i = 0; i < m_doc->layerCount(); ++i) {
        const int row = m_doc->sensitivityRow(i), col = m_doc->sensitivityColumn(m_doc->setting(i));
        if (row >= 0 && col >= 0) {
            xs << col;
            ys << row;
        }
    }
    m_current->setData(xs, ys, true);
    const int row = m_doc->sensitivityRow(m_doc->currentLayer());
    m_selected->setVisible(row >= 0);
    if (row >= 0) {
        m_selected->topLeft->setCoords(-0.5, row - 0.5);
        m_selected->bottomRight->setCoords(static_cast<double>(r.settings.size()) - 0.5, row + 0.5);
    }
    m_heat->replot(QCustomPlot::rpQueuedReplot);
}

void SensitivityWidget::updateBars()
{
    if (!m_doc->sensitivity())
        return;
    const auto &r = *m_doc->sensitivity();
    const int layer = m_doc->currentLayer();
    const int row = m_doc->sensitivityRow(layer);
    QVector<double> keys, values;
    QSharedPointer<QCPAxisTickerText> xt(new QCPAxisTickerText);
    for (std::size_t s = 0; s < r.settings.size(); ++s) {
        keys << static_cast<double>(s);
        const double v = m_doc->sensitivityValue(m_metric, row, static_cast<int>(s));
        values << (std::isfinite(v) ? v : 0.0);
        xt->addTick(static_cast<double>(s), r.settings[s].label());
    }
    m_barData->setData(keys, values);
    m_bars->xAxis->setTicker(xt);
    m_bars->xAxis->setRange(-0.6, static_cast<double>(r.settings.size()) - 0.4);
    m_bars->yAxis->setLabel(metricName(m_metric));
    m_bars->yAxis->setScaleType(QCPAxis::stLinear);
    m_bars->yAxis->setTicker(QSharedPointer<QCPAxisTicker>(new QCPAxisTicker));
    m_barData->rescaleValueAxis(false, false);
    m_bars->yAxis->setRangeLower(std::min(0.0, m_bars->yAxis->range().lower));
    m_bars->yAxis->setRangeUpper(m_bars->yAxis->range().upper * 1.1 + 1e-12);
    if (m_bars->plotLayout()->rowCount() < 2) {
        m_bars->plotLayout()->insertRow(0);
        m_bars->plotLayout()->addElement(0, 0, new QCPTextElement(m_bars, QString()));
    }
    if (auto *title = qobject_cast<QCPTextElement *>(m_bars->plotLayout()->element(0, 0)))
        title->setText(row >= 0 ? tr("%1 of %2 per setting").arg(metricName(m_metric), r.layers[static_cast<std::size_t>(row)])
                                : tr("select a layer to see its %1 per setting").arg(metricName(m_metric)));
    if (auto *title = qobject_cast<QCPTextElement *>(m_bars->plotLayout()->element(0, 0)))
        title->setTextColor(palette().color(QPalette::Text));
    m_bars->replot(QCustomPlot::rpQueuedReplot);
}

QPoint SensitivityWidget::cellAt(const QPoint &pos) const
{
    if (!m_doc->sensitivity())
        return {-1, -1};
    const auto &r = *m_doc->sensitivity();
    const int s = static_cast<int>(std::lround(m_heat->xAxis->pixelToCoord(pos.x())));
    const int l = static_cast<int>(std::lround(m_heat->yAxis->pixelToCoord(pos.y())));
    if (!m_heat->axisRect()->rect().contains(pos) || s < 0 || l < 0 || s >= static_cast<int>(r.settings.size())
        || l >= static_cast<int>(r.layers.size()))
        return {-1, -1};
    return {s, l};
}

QString SensitivityWidget::cellToolTip(int row, int column) const
{
    if (!m_doc->sensitivity() || row < 0 || column < 0)
        return {};
    const auto &r = *m_doc->sensitivity();
    if (row >= static_cast<int>(r.layers.size()) || column >= static_cast<int>(r.settings.size()))
        return {};
    auto v = [&](SensitivityMetric m) {
        const double x = m_doc->sensitivityValue(m, row, column);
        return std::isfinite(x) ? QString::number(x, 'g', 4) : QStringLiteral("n/a");
    };
    QString tip = QStringLiteral("<b>%1</b> · %2<br>Δloss %3<br>KL %4<br>perplexity %5<br>"
                                 "relative error %6<br>Hessian-weighted %7<br>imatrix %8<br>size %9 bytes")
                      .arg(r.layers[static_cast<std::size_t>(row)], r.settings[static_cast<std::size_t>(column)].label(),
                           v(SensitivityMetric::DeltaLoss), v(SensitivityMetric::Kl), v(SensitivityMetric::Perplexity),
                           v(SensitivityMetric::RelativeError), v(SensitivityMetric::HessianError),
                           v(SensitivityMetric::ActivationError))
                      .arg(r.at(r.bytes, static_cast<std::size_t>(row), static_cast<std::size_t>(column)), 0, 'f', 0);
    const double h = m_doc->sensitivityValue(SensitivityMetric::Hutchinson, row, column);
    if (std::isfinite(h))
        tip += QStringLiteral("<br>Hutchinson trace %1").arg(h, 0, 'g', 4);
    tip += tr("<br><i>click to use this setting for this layer</i>");
    return tip;
}

void SensitivityWidget::activateCell(int row, int column)
{
    if (!m_doc->sensitivity() || row < 0 || column < 0)
        return;
    const auto &r = *m_doc->sensitivity();
    if (row >= static_cast<int>(r.layers.size()) || column >= static_cast<int>(r.settings.size()))
        return;
    const int layer = m_doc->layerIndex(r.layers[static_cast<std::size_t>(row)]);
    if (layer < 0)
        return;
    m_doc->selectLayer(layer);
    m_doc->setLayerSetting(layer, core::LayerSetting::fromSensitivity(r.settings[static_cast<std::size_t>(column)]));
}

} // namespace bitsmith::ui

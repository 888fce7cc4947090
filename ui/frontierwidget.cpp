// frontierwidget.cpp: the accuracy-vs-size chart and its jobs.
#include "frontierwidget.h"

#include "jobmanager.h"
#include "plotutil.h"
#include "workbenchtasks.h"

#include <QCheckBox>
#include <QHBoxLayout>
#include <QLabel>
#include <QLineEdit>
#include <QPointer>
#include <QPushButton>
#include <QVBoxLayout>
#include <qcustomplot.h>

#include <cmath>
#include <limits>

namespace bitsmith::ui {

namespace {

QCPGraph *scatterGraph(QCustomPlot *plot, const QString &name, QCPScatterStyle::ScatterShape shape, QColor color, double size)
{
    QCPGraph *g = plot->addGraph();
    g->setName(name);
    g->setLineStyle(QCPGraph::lsNone);
    g->setScatterStyle(QCPScatterStyle(shape, QPen(color.darker(130), 1.5), color, size));
    g->setPen(QPen(color));
    g->setSelectable(QCP::stSingleData);
    return g;
}

} // namespace

FrontierWidget::FrontierWidget(ProjectDocument *doc, JobManager *jobs, QWidget *parent)
    : QWidget(parent)
    , m_doc(doc)
    , m_jobs(jobs)
{
    m_plot = new QCustomPlot(this);
    m_plot->setObjectName(QStringLiteral("frontierPlot"));
    m_plot->setMinimumSize(250, 150);
    m_frontier = m_plot->addGraph();
    m_frontier->setName(tr("predicted frontier"));
    m_frontier->setPen(QPen(QColor(70, 130, 180), 2));
    m_frontier->setScatterStyle(QCPScatterStyle(QCPScatterStyle::ssDisc, 3));
    m_frontier->setSelectable(QCP::stSingleData);
    m_uniform = scatterGraph(m_plot, tr("uniform (predicted)"), QCPScatterStyle::ssSquare, QColor(230, 126, 34), 9);
    m_measured = scatterGraph(m_plot, tr("measured"), QCPScatterStyle::ssDiamond, QColor(39, 174, 96), 11);
    m_saved = scatterGraph(m_plot, tr("saved configurations"), QCPScatterStyle::ssStar, QColor(142, 68, 173), 13);
    m_current = scatterGraph(m_plot, tr("current recipe"), QCPScatterStyle::ssCircle, QColor(231, 76, 60), 14);
    m_current->setScatterStyle(QCPScatterStyle(QCPScatterStyle::ssCircle, QPen(QColor(192, 57, 43), 3), QColor(231, 76, 60, 120), 16));
    m_currentLabel = new QCPItemText(m_plot);
    m_currentLabel->setPositionAlignment(Qt::AlignLeft | Qt::AlignBottom);
    m_currentLabel->setPadding(QMargins(8, 0, 0, 8));
    m_currentLabel->setColor(QColor(192, 57, 43));
    m_currentLabel->setVisible(false);
    m_plot->legend->setVisible(true);
    m_plot->axisRect()->insetLayout()->setInsetAlignment(0, Qt::AlignTop | Qt::AlignRight);
    m_plot->xAxis->setLabel(tr("effective bits per weight (compressible layers)"));
    m_plot->setInteraction(QCP::iSelectPlottables, true);
    installExportMenu(m_plot);
    connect(m_plot, &QCustomPlot::plottableClick, this,
            [this](QCPAbstractPlottable *p, int i, QMouseEvent *) { onPlottableClick(p, i); });

    m_logBox = new QCheckBox(tr("Log scale"), this);
    m_logBox->setChecked(true);
    connect(m_logBox, &QCheckBox::toggled, this, &FrontierWidget::rebuild);
    auto *measureCurrentButton = new QPushButton(tr("Measure current"), this);
    measureCurrentButton->setObjectName(QStringLiteral("measureCurrentButton"));
    measureCurrentButton->setToolTip(tr("Compress the model with the current recipe and measure its real KL and "
                                        "perplexity on the evaluation text (Ctrl+M)"));
    connect(measureCurrentButton, &QPushButton::clicked, this, &FrontierWidget::measureCurrent);
    auto *measureUniformButton = new QPushButton(tr("Measure uniform"), this);
    measureUniformButton->setToolTip(tr("Measure every uniform-precision model (all layers at one setting)"));
    connect(measureUniformButton, &QPushButton::clicked, this, &FrontierWidget::measureUniform);
    m_nameEdit = new QLineEdit(this);
    m_nameEdit->setPlaceholderText(tr("configuration name"));
    m_nameEdit->setMaximumWidth(180);
    auto *saveButton = new QPushButton(tr("Save configuration"), this);
    saveButton->setObjectName(QStringLiteral("saveConfigurationButton"));
    saveButton->setToolTip(tr("Keep the current recipe as a named point (kept in the project, independent of undo)"));
    connect(saveButton, &QPushButton::clicked, this, [this] {
        QString name = m_nameEdit->text().trimmed();
        if (name.isEmpty())
            name = tr("config %1").arg(m_doc->savedConfigurations().size() + 1);
        m_doc->saveConfiguration(name);
        m_nameEdit->clear();
    });
    m_info = new QLabel(this);
    m_info->setObjectName(QStringLiteral("frontierInfo"));
    m_info->setWordWrap(true);
    m_info->setSizePolicy(QSizePolicy::Ignored, QSizePolicy::Preferred);

    auto *controls = new QHBoxLayout;
    controls->addWidget(m_logBox);
    controls->addStretch(1);
    controls->addWidget(measureCurrentButton);
    controls->addWidget(measureUniformButton);
    controls->addSpacing(12);
    controls->addWidget(m_nameEdit);
    controls->addWidget(saveButton);
    auto *layout = new QVBoxLayout(this);
    layout->setContentsMargins(4, 4, 4, 4);
    layout->addLayout(controls);
    layout->addWidget(m_plot, 1);
    layout->addWidget(m_info);

    connect(m_doc, &ProjectDocument::sensitivityChanged, this, [this] {
        if (m_doc->sensitivity() && m_doc->frontier().empty())
            computeFrontier();
        rebuild();
    });
    connect(m_doc, &ProjectDocument::frontierChanged, this, [this] {
        if (m_doc->sensitivity() && m_doc->frontier().empty() && !m_frontierJob)
            computeFrontier();
        rebuild();
    });
    connect(m_doc, &ProjectDocument::measuredChanged, this, &FrontierWidget::rebuild);
    connect(m_doc, &ProjectDocument::savedChanged, this, &FrontierWidget::rebuild);
    connect(m_doc, &ProjectDocument::recipeChanged, this, &FrontierWidget::updateCurrent);
    rebuild();
}

Job *FrontierWidget::computeFrontier()
{
    if (!m_doc->sensitivity())
        return nullptr;
    if (m_frontierJob)
        m_frontierJob->cancel();
    const std::vector<core::AllocationLayer> problem = m_doc->allocationProblem();
    QPointer<ProjectDocument> doc = m_doc;
    m_frontierJob = m_jobs->start(tr("Frontier (%1 layers)").arg(problem.size()),
                                  [problem, doc](core::Feedback &fb) -> core::Expected<Job::Apply> {
                                      fb.setStatus(QStringLiteral("dynamic programming over the size budget"));
                                      auto curve = core::allocationFrontier(problem, 200);
                                      if (!curve)
                                          return core::unexpected(curve.error());
                                      if (fb.isCancelled())
                                          return core::unexpected(core::fail(core::ErrorCode::Cancelled, QStringLiteral("cancelled")));
                                      return Job::Apply([doc, c = std::move(*curve)]() mutable {
                                          if (doc)
                                              doc->setFrontier(std::move(c));
                                      });
                                  });
    Job *job = m_frontierJob;
    connect(job, &Job::finished, this, [this, job] {
        if (m_frontierJob == job)
            m_frontierJob = nullptr;
    });
    return job;
}

core::Recipe FrontierWidget::uniformRecipe(int column) const
{
    std::vector<core::LayerSetting> settings = m_doc->settings();
    const auto &r = *m_doc->sensitivity();
    for (int i = 0; i < m_doc->layerCount(); ++i)
        if (m_doc->sensitivityRow(i) >= 0)
            settings[static_cast<std::size_t>(i)] = core::LayerSetting::fromSensitivity(r.settings[static_cast<std::size_t>(column)]);
    return core::recipeFromAssignment(m_doc->recipe(), m_doc->layers(), settings);
}

namespace {

Job *startMeasure(JobManager *jobs, ProjectDocument *doc, const QString &name, std::vector<MeasureRequest> requests)
{
    if (!doc->model())
        return nullptr;
    std::shared_ptr<const core::Model> model = doc->model();
    QString evalText;
    int ctx = 128, windows = 4;
    if (doc->sensitivity()) {
        evalText = doc->sensitivity()->evalText;
        ctx = doc->sensitivity()->ctx;
        windows = std::max(2, doc->sensitivity()->windows);
    }
    ctx = std::min(ctx, model->config().maxPositions);
    // Each point is published as soon as it is measured (queued to the document's thread; the
    // document outlives every worker: MainWindow deletes its jobs first).
    ProjectDocument *target = doc;
    return jobs->start(name, [model, requests, evalText, ctx, windows, target](core::Feedback &fb) -> core::Expected<Job::Apply> {
        auto points = measureRecipes(model, requests, evalText, ctx, windows, fb, [target](const core::MeasuredPoint &p) {
            QMetaObject::invokeMethod(target, [target, p] { target->addMeasuredPoint(p); }, Qt::QueuedConnection);
        });
        if (!points)
            return core::unexpected(points.error());
        return Job::Apply{};
    });
}

} // namespace

Job *FrontierWidget::measureCurrent()
{
    const ProjectDocument::Totals &t = m_doc->totals();
    MeasureRequest r{QStringLiteral("recipe"), tr("recipe %1 bpw").arg(t.bitsPerWeight, 0, 'f', 2), m_doc->recipe(), t.bytes,
                     t.bitsPerWeight, t.predicted};
    return startMeasure(m_jobs, m_doc, tr("Measure current recipe"), {r});
}

Job *FrontierWidget::measureUniform()
{
    if (!m_doc->sensitivity())
        return nullptr;
    std::vector<MeasureRequest> requests;
    const auto &r = *m_doc->sensitivity();
    for (std::size_t s = 0; s < r.settings.size(); ++s) {
        const core::Recipe recipe = uniformRecipe(static_cast<int>(s));
        const ProjectDocument::Totals t = m_doc->totalsFor(core::resolveAssignment(recipe, m_doc->layers()));
        requests.push_back({QStringLiteral("uniform"), r.settings[s].label(), recipe, t.bytes, t.bitsPerWeight, t.predicted});
    }
    const QString name = tr("Measure %1 uniform models").arg(requests.size());
    return startMeasure(m_jobs, m_doc, name, std::move(requests));
}

void FrontierWidget::clearLabels()
{
    for (QCPItemText *t : m_labels)
        m_plot->removeItem(t);
    m_labels.clear();
}

void FrontierWidget::rebuild()
{
    clearLabels();
    const bool log = m_logBox->isChecked();
    auto y = [log](double v) { return log ? std::max(v, 1e-6) : v; };
    // Each series labels on its own side of the point so that coinciding points stay readable.
    auto addLabel = [this](double x, double yy, const QString &text, QColor color, Qt::Alignment where) {
        auto *t = new QCPItemText(m_plot);
        t->position->setCoords(x, yy);
        t->setPositionAlignment(where);
        t->setPadding(QMargins(7, 2, 7, 2));
        t->setText(text);
        t->setColor(color);
        QFont f = t->font();
        f.setPointSizeF(f.pointSizeF() - 1);
        t->setFont(f);
        m_labels << t;
    };

    QVector<double> fx, fy;
    for (const core::FrontierPoint &p : m_doc->frontier()) {
        fx << p.bitsPerWeight;
        fy << y(p.loss);
    }
    m_frontier->setData(fx, fy, true);

    QVector<double> ux, uy;
    m_uniformColumns.clear();
    if (m_doc->sensitivity()) {
        const auto &r = *m_doc->sensitivity();
        std::vector<std::pair<double, int>> order;
        for (std::size_t s = 0; s < r.settings.size(); ++s) {
            std::vector<core::LayerSetting> all = m_doc->settings();
            for (int i = 0; i < m_doc->layerCount(); ++i)
                if (m_doc->sensitivityRow(i) >= 0)
                    all[static_cast<std::size_t>(i)] = core::LayerSetting::fromSensitivity(r.settings[s]);
            const ProjectDocument::Totals t = m_doc->totalsFor(all);
            order.push_back({t.bitsPerWeight, static_cast<int>(s)});
            ux << t.bitsPerWeight;
            uy << y(t.predicted);
            addLabel(t.bitsPerWeight, y(t.predicted), r.settings[s].label(), QColor(211, 84, 0), Qt::AlignLeft | Qt::AlignTop);
        }
        for (std::size_t s = 0; s < r.settings.size(); ++s)
            m_uniformColumns.push_back(static_cast<int>(s));
    }
    // QCPGraph sorts by key; keep our index mapping by finding the column from the key later.
    m_uniform->setData(ux, uy);

    QVector<double> mx, my;
    for (const core::MeasuredPoint &m : m_doc->measuredPoints()) {
        mx << m.bitsPerWeight;
        my << y(m.kl);
        // Uniform points carry their name on the predicted square already.
        const QString text = m.kind == QLatin1String("uniform") ? tr("ppl %1").arg(m.perplexity, 0, 'f', 1)
                                                                 : tr("%1 (ppl %2)").arg(m.label).arg(m.perplexity, 0, 'f', 1);
        addLabel(m.bitsPerWeight, y(m.kl), text, QColor(30, 132, 73), Qt::AlignRight | Qt::AlignBottom);
    }
    m_measured->setData(mx, my);
    QVector<double> sx, sy;
    for (const core::SavedConfiguration &s : m_doc->savedConfigurations()) {
        sx << s.bitsPerWeight;
        sy << y(s.predicted);
        addLabel(s.bitsPerWeight, y(s.predicted), s.name, QColor(125, 60, 152), Qt::AlignHCenter | Qt::AlignTop);
    }
    m_saved->setData(sx, sy);

    m_plot->yAxis->setScaleType(log ? QCPAxis::stLogarithmic : QCPAxis::stLinear);
    if (log)
        m_plot->yAxis->setTicker(QSharedPointer<QCPAxisTickerLog>(new QCPAxisTickerLog));
    else
        m_plot->yAxis->setTicker(QSharedPointer<QCPAxisTicker>(new QCPAxisTicker));
    m_plot->yAxis->setLabel(tr("%1 (predicted: sum over layers; measured: real)").arg(metricName(m_doc->costMetric())));
    m_info->setText(m_doc->sensitivity()
                        ? tr("%1 frontier points · %2 measured · %3 saved. Click a point to load its recipe; the red "
                             "circle is the current recipe.")
                              .arg(m_doc->frontier().size())
                              .arg(m_doc->measuredPoints().size())
                              .arg(m_doc->savedConfigurations().size())
                        : tr("Run the sensitivity analysis to see the predicted frontier."));
    applyPlotPalette(m_plot);
    updateCurrent();
    m_plot->rescaleAxes();
    const QCPRange xr = m_plot->xAxis->range();
    m_plot->xAxis->setRange(xr.lower - 0.3, xr.upper + 0.5);
    const QCPRange yr = m_plot->yAxis->range();
    if (log)
        m_plot->yAxis->setRange(yr.lower / 1.6, yr.upper * 2.5);
    else
        m_plot->yAxis->setRange(yr.lower - 0.05 * yr.size(), yr.upper + 0.15 * yr.size());
    m_plot->replot(QCustomPlot::rpQueuedReplot);
}

QPointF FrontierWidget::currentMarker() const
{
    if (m_current->data()->isEmpty())
        return {std::numeric_limits<double>::quiet_NaN(), std::numeric_limits<double>::quiet_NaN()};
    const auto it = m_current->data()->constBegin();
    return {it->key, it->value};
}

void FrontierWidget::updateCurrent()
{
    const ProjectDocument::Totals &t = m_doc->totals();
    const bool known = m_doc->sensitivity().has_value() && t.parameters > 0;
    const double yv = m_logBox->isChecked() ? std::max(t.predicted, 1e-6) : t.predicted;
    if (known)
        m_current->setData({t.bitsPerWeight}, {yv});
    else
        m_current->data()->clear();
    m_currentLabel->setVisible(known);
    if (known) {
        m_currentLabel->position->setCoords(t.bitsPerWeight, yv);
        m_currentLabel->setText(tr("current: %1 bpw, %2 %3").arg(t.bitsPerWeight, 0, 'f', 3)
                                    .arg(metricName(m_doc->costMetric()))
                                    .arg(t.predicted, 0, 'g', 3));
    }
    m_plot->replot(QCustomPlot::rpQueuedReplot);
}

void FrontierWidget::onPlottableClick(QCPAbstractPlottable *plottable, int dataIndex)
{
    if (plottable == m_frontier)
        activatePoint(QStringLiteral("frontier"), dataIndex);
    else if (plottable == m_uniform)
        activatePoint(QStringLiteral("uniform"), dataIndex);
    else if (plottable == m_measured)
        activatePoint(QStringLiteral("measured"), dataIndex);
    else if (plottable == m_saved)
        activatePoint(QStringLiteral("saved"), dataIndex);
}

void FrontierWidget::activatePoint(const QString &series, int index)
{
    if (index < 0)
        return;
    if (series == QLatin1String("frontier")) {
        // QCPGraph keeps data sorted by key; the frontier is stored by increasing size already.
        if (index >= static_cast<int>(m_doc->frontier().size()))
            return;
        const core::FrontierPoint &p = m_doc->frontier()[static_cast<std::size_t>(index)];
        m_doc->loadRecipe(core::recipeFromAssignment(m_doc->recipe(), m_doc->layers(), m_doc->settingsForChoice(p.choice)),
                          tr("Load frontier point (%1 bpw)").arg(p.bitsPerWeight, 0, 'f', 3));
    } else if (series == QLatin1String("uniform")) {
        if (!m_doc->sensitivity() || index >= m_uniform->dataCount())
            return;
        // The graph sorted the points by bits per weight: find the setting with that key.
        const double key = (m_uniform->data()->constBegin() + index)->key;
        const auto &r = *m_doc->sensitivity();
        for (std::size_t s = 0; s < r.settings.size(); ++s) {
            const core::Recipe recipe = uniformRecipe(static_cast<int>(s));
            if (std::abs(m_doc->totalsFor(core::resolveAssignment(recipe, m_doc->layers())).bitsPerWeight - key) < 1e-9) {
                m_doc->loadRecipe(recipe, tr("Load uniform %1").arg(r.settings[s].label()));
                return;
            }
        }
    } else if (series == QLatin1String("measured")) {
        // Sorted by key too: match on bits per weight and measured value.
        if (index >= m_measured->dataCount())
            return;
        const auto it = m_measured->data()->constBegin() + index;
        for (const core::MeasuredPoint &m : m_doc->measuredPoints())
            if (std::abs(m.bitsPerWeight - it->key) < 1e-9) {
                m_doc->loadRecipe(m.recipe, tr("Load measured %1").arg(m.label));
                return;
            }
    } else if (series == QLatin1String("saved")) {
        if (index >= m_saved->dataCount())
            return;
        const auto it = m_saved->data()->constBegin() + index;
        for (const core::SavedConfiguration &s : m_doc->savedConfigurations())
            if (std::abs(s.bitsPerWeight - it->key) < 1e-9) {
                m_doc->loadRecipe(s.recipe, tr("Load configuration “%1”").arg(s.name));
                return;
            }
    }
}

} // namespace bitsmith::ui

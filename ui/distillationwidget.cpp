// distillationwidget.cpp: the Distillation view: settings, the job with pause / cancel, live
// loss curves and the measured point of the recovered model.
#include "distillationwidget.h"

#include "jobmanager.h"
#include "plotutil.h"
#include "workbenchtasks.h" // runDistillation

#include <QComboBox>
#include <QCoreApplication>
#include <QDoubleSpinBox>
#include <QFormLayout>
#include <QHBoxLayout>
#include <QLabel>
#include <QPointer>
#include <QPushButton>
#include <QSpinBox>
#include <QVBoxLayout>
#include <qcustomplot.h>

#include <chrono>
#include <cmath>

namespace bitsmith::ui {

namespace {

QCPGraph *lineGraph(QCustomPlot *plot, const QString &name, QColor color, Qt::PenStyle style = Qt::SolidLine)
{
    QCPGraph *g = plot->addGraph();
    g->setName(name);
    g->setPen(QPen(color, 2, style));
    return g;
}

QString duration(double seconds)
{
    if (!std::isfinite(seconds) || seconds < 0)
        return QStringLiteral("–");
    const int s = static_cast<int>(std::lround(seconds));
    return s >= 60 ? QStringLiteral("%1m%2s").arg(s / 60).arg(s % 60, 2, 10, QLatin1Char('0')) : QStringLiteral("%1 s").arg(s);
}

} // namespace

DistillationWidget::DistillationWidget(ProjectDocument *doc, JobManager *jobs, QWidget *parent)
    : QWidget(parent)
    , m_doc(doc)
    , m_jobs(jobs)
    , m_control(std::make_shared<DistillPauseControl>())
{
    m_student = new QComboBox(this);
    m_student->setObjectName(QStringLiteral("distillStudent"));
    m_student->addItem(tr("Current recipe (compressed)"), QStringLiteral("recipe"));
    m_student->addItem(tr("Every other block (half depth)"), QStringLiteral("layers:every-other"));
    m_student->addItem(tr("Half the MLP neurons"), QStringLiteral("mlp:0.5"));
    m_student->setToolTip(tr("The student: the model compressed with the current recipe (trained quantization-aware on its "
                             "frozen grids, pruned zeros kept), or a smaller architecture initialised from the teacher"));
    auto spin = [this](int lo, int hi, int value, const QString &tip) {
        auto *s = new QSpinBox(this);
        s->setRange(lo, hi);
        s->setValue(value);
        s->setToolTip(tip);
        return s;
    };
    auto dspin = [this](double lo, double hi, double value, int decimals, double step, const QString &tip) {
        auto *s = new QDoubleSpinBox(this);
        s->setRange(lo, hi);
        s->setDecimals(decimals);
        s->setSingleStep(step);
        s->setValue(value);
        s->setToolTip(tip);
        return s;
    };
    m_steps = spin(1, 100000, 50, tr("Optimizer steps"));
    m_lr = dspin(0.00001, 0.1, 0.0003, 5, 0.0001, tr("Peak learning rate (AdamW, warm-up then cosine decay)"));
    m_temperature = dspin(0.1, 20.0, 2.0, 1, 0.5, tr("Softmax temperature T of the KD term"));
    m_alpha = dspin(0.0, 1.0, 1.0, 2, 0.1, tr("α: weight of the KD term α·T²·KL; 1 − α weighs cross-entropy (0 = plain fine-tuning)"));
    m_batch = spin(1, 64, 4, tr("Sequences per step"));
    m_ctx = spin(8, 4096, 128, tr("Tokens per sequence"));
    m_steps->setObjectName(QStringLiteral("distillSteps"));

    m_start = new QPushButton(tr("Start"), this);
    m_start->setObjectName(QStringLiteral("distillStart"));
    m_pause = new QPushButton(tr("Pause"), this);
    m_pause->setObjectName(QStringLiteral("distillPause"));
    m_cancel = new QPushButton(tr("Cancel"), this);
    m_cancel->setObjectName(QStringLiteral("distillCancel"));
    connect(m_start, &QPushButton::clicked, this, &DistillationWidget::start);
    connect(m_pause, &QPushButton::clicked, this, [this] { isPaused() ? resume() : pause(); });
    connect(m_cancel, &QPushButton::clicked, this, &DistillationWidget::cancel);

    m_info = new QLabel(this);
    m_info->setObjectName(QStringLiteral("distillInfo"));
    m_info->setWordWrap(true);
    m_result = new QLabel(this);
    m_result->setObjectName(QStringLiteral("distillResult"));
    m_result->setWordWrap(true);
    m_result->setTextInteractionFlags(Qt::TextSelectableByMouse);

    m_plot = new QCustomPlot(this);
    m_plot->setObjectName(QStringLiteral("distillPlot"));
    m_plot->setMinimumSize(250, 150);
    m_loss = lineGraph(m_plot, tr("train loss"), QColor(41, 128, 185));
    m_kd = lineGraph(m_plot, tr("KD part (α·T²·KL)"), QColor(142, 68, 173), Qt::DashLine);
    m_ce = lineGraph(m_plot, tr("CE part ((1−α)·CE)"), QColor(211, 84, 0), Qt::DashLine);
    // Validation NLL (≈ 3.5 nats) and a KD loss (≈ 0.1) differ by an order of magnitude: the
    // validation curve gets the right-hand axis so both stay readable.
    m_val = m_plot->addGraph(m_plot->xAxis, m_plot->yAxis2);
    m_val->setName(tr("validation loss (right axis)"));
    m_val->setPen(QPen(QColor(39, 174, 96), 2));
    m_plot->yAxis2->setVisible(true);
    m_plot->yAxis2->setLabel(tr("validation NLL (nats)"));
    m_val->setScatterStyle(QCPScatterStyle(QCPScatterStyle::ssDisc, 7));
    m_plot->xAxis->setLabel(tr("step"));
    m_plot->yAxis->setLabel(tr("loss (nats)"));
    m_plot->legend->setVisible(true);
    m_plot->axisRect()->insetLayout()->setInsetAlignment(0, Qt::AlignTop | Qt::AlignRight);
    applyPlotPalette(m_plot);
    installExportMenu(m_plot);

    auto *form = new QFormLayout;
    form->addRow(tr("Student:"), m_student);
    form->addRow(tr("Steps:"), m_steps);
    form->addRow(tr("Learning rate:"), m_lr);
    form->addRow(tr("Temperature:"), m_temperature);
    form->addRow(tr("α (KD weight):"), m_alpha);
    auto *bc = new QHBoxLayout;
    bc->addWidget(m_batch);
    bc->addWidget(new QLabel(QStringLiteral("×"), this));
    bc->addWidget(m_ctx);
    form->addRow(tr("Batch × ctx:"), bc);
    auto *buttons = new QHBoxLayout;
    buttons->addWidget(m_start);
    buttons->addWidget(m_pause);
    buttons->addWidget(m_cancel);
    auto *left = new QVBoxLayout;
    left->addLayout(form);
    left->addLayout(buttons);
    left->addWidget(m_info);
    left->addWidget(m_result);
    left->addStretch(1);
    auto *layout = new QHBoxLayout(this);
    layout->setContentsMargins(4, 4, 4, 4);
    layout->addLayout(left);
    layout->addWidget(m_plot, 1);
    m_info->setText(tr("A teacher (the original model) trains the student on its soft predictions: "
                       "α·T²·KL(teacher/T ‖ student/T) + (1−α)·CE."));
    updateButtons();
    connect(m_doc, &ProjectDocument::modelChanged, this, &DistillationWidget::updateButtons);
}

DistillationWidget::~DistillationWidget()
{
    // A paused worker must not stay blocked: the job (owned by the manager) cancels and waits.
    resume();
}

DistillationWidget::Settings DistillationWidget::settings() const
{
    Settings s;
    s.student = m_student->currentData().toString();
    s.steps = m_steps->value();
    s.learningRate = m_lr->value();
    s.temperature = m_temperature->value();
    s.alpha = m_alpha->value();
    s.batch = m_batch->value();
    s.ctx = m_ctx->value();
    s.evalEvery = m_evalEvery;
    s.valWindows = m_valWindows;
    return s;
}

void DistillationWidget::setSettings(const Settings &s)
{
    const int i = m_student->findData(s.student);
    if (i >= 0)
        m_student->setCurrentIndex(i);
    m_steps->setValue(s.steps);
    m_lr->setValue(s.learningRate);
    m_temperature->setValue(s.temperature);
    m_alpha->setValue(s.alpha);
    m_batch->setValue(s.batch);
    m_ctx->setValue(s.ctx);
    m_evalEvery = s.evalEvery;
    m_valWindows = s.valWindows;
}

bool DistillationWidget::isPaused() const
{
    std::lock_guard lock(m_control->mutex);
    return m_control->paused;
}

bool DistillationWidget::isWorkerWaiting() const
{
    return m_control->waiting.load();
}

void DistillationWidget::pause()
{
    if (!m_job || !m_job->isRunning())
        return;
    {
        std::lock_guard lock(m_control->mutex);
        m_control->paused = true;
    }
    updateButtons();
}

void DistillationWidget::resume()
{
    {
        std::lock_guard lock(m_control->mutex);
        m_control->paused = false;
    }
    m_control->wake.notify_all();
    updateButtons();
}

void DistillationWidget::cancel()
{
    if (m_job && m_job->isRunning())
        m_job->cancel(); // the paused worker polls the cancel flag while it waits
    updateButtons();
}

Job *DistillationWidget::start()
{
    if (!m_doc->model() || (m_job && m_job->isRunning()))
        return nullptr;
    const Settings s = settings();
    std::shared_ptr<const core::Model> teacher = m_doc->model();
    DistillSpec spec;
    spec.student = s.student;
    spec.recipe = m_doc->recipe();
    core::train::DistillOptions &o = spec.options;
    o.steps = s.steps;
    o.learningRate = s.learningRate;
    o.temperature = static_cast<float>(s.temperature);
    o.alpha = static_cast<float>(s.alpha);
    o.batch = s.batch;
    o.ctx = std::min(s.ctx, teacher->config().maxPositions);
    o.evalEvery = s.evalEvery;
    o.valWindows = s.valWindows;
    o.logEvery = std::max(1, s.steps / 20);
    const ProjectDocument::Totals &t = m_doc->totals();
    spec.teacherParameters = t.parameters;
    spec.denseBytesPerParameter = t.parameters > 0 ? t.originalBytes / t.parameters : 2.0;
    spec.recipeBytes = t.bytes;
    spec.recipeBitsPerWeight = t.bitsPerWeight;
    spec.recipePredicted = t.predicted;

    {
        std::lock_guard lock(m_control->mutex);
        m_control->paused = false;
    }
    resetCurves();
    m_result->clear();
    const QString studentName = m_student->currentText();
    m_info->setText(tr("Distilling into %1: %2 steps of %3 × %4 tokens…").arg(studentName).arg(s.steps).arg(o.batch).arg(o.ctx));

    std::shared_ptr<DistillPauseControl> control = m_control;
    QPointer<DistillationWidget> self = this;
    m_job = m_jobs->start(
        tr("Distill: %1, %2 steps").arg(s.student == QLatin1String("recipe") ? tr("recipe") : s.student).arg(s.steps),
        [teacher, spec, control, self](core::Feedback &fb) -> core::Expected<Job::Apply> {
            auto onStep = [&fb, control, self](const core::train::DistillProgress &p) {
                // Queued to the UI thread: qApp lives there and outlives every view; the view
                // may be gone by the time the event runs (QPointer).
                QMetaObject::invokeMethod(
                    QCoreApplication::instance(),
                    [self, p] {
                        if (self)
                            self->onProgress(p);
                    },
                    Qt::QueuedConnection);
                // Pause: block here, between two steps, until resumed or cancelled.
                std::unique_lock lock(control->mutex);
                if (!control->paused)
                    return;
                fb.setStatus(QStringLiteral("paused after step %1/%2").arg(p.step).arg(p.steps));
                control->waiting = true;
                while (control->paused && !fb.isCancelled())
                    control->wake.wait_for(lock, std::chrono::milliseconds(50));
                control->waiting = false;
            };
            auto r = runDistillation(teacher, spec, fb, onStep);
            if (!r)
                return core::unexpected(r.error());
            return Job::Apply([self, res = *r] {
                if (!self)
                    return;
                self->m_doc->addMeasuredPoint(res.point);
                self->m_teacherPerplexity = res.teacherPerplexity;
                const double gap = res.perplexityBefore - res.teacherPerplexity;
                const double recovered = gap > 0 ? (res.perplexityBefore - res.perplexityAfter) / gap : std::nan("");
                self->m_result->setText(
                    self->tr("<b>%1 steps done.</b> Validation perplexity %2 → <b>%3</b> (teacher %4%5).<br>"
                             "Added to Accuracy vs Size: %6 bits/weight, KL %7 nats, perplexity %8.")
                        .arg(res.steps)
                        .arg(res.perplexityBefore, 0, 'f', 2)
                        .arg(res.perplexityAfter, 0, 'f', 2)
                        .arg(res.teacherPerplexity, 0, 'f', 2)
                        .arg(std::isfinite(recovered) ? self->tr(", %1% of the gap recovered").arg(100.0 * recovered, 0, 'f', 0)
                                                      : QString())
                        .arg(res.point.bitsPerWeight, 0, 'f', 2)
                        .arg(res.point.kl, 0, 'f', 4)
                        .arg(res.point.perplexity, 0, 'f', 2));
            });
        });
    connect(m_job, &Job::finished, this, [this, job = m_job](bool ok) {
        {
            std::lock_guard lock(m_control->mutex);
            m_control->paused = false;
        }
        QString state;
        if (ok)
            state = QStringLiteral("finished");
        else if (job->state() == Job::State::Cancelled)
            state = QStringLiteral("cancelled");
        else
            state = QStringLiteral("failed");
        const int step = m_received.empty() ? 0 : m_received.back().step;
        if (state == QLatin1String("cancelled"))
            m_result->setText(tr("<b>Cancelled</b> after step %1; nothing was added to the chart.").arg(step));
        else if (state == QLatin1String("failed"))
            m_result->setText(tr("<b>Failed:</b> %1").arg(job->error() ? job->error()->toString() : tr("unknown error")));
        updateButtons();
        emit runEnded(state);
    });
    updateButtons();
    return m_job;
}

void DistillationWidget::onProgress(const core::train::DistillProgress &p)
{
    m_received.push_back(p);
    m_loss->addData(p.step, p.loss);
    m_kd->addData(p.step, p.kd);
    m_ce->addData(p.step, p.ce);
    if (std::isfinite(p.valLoss))
        m_val->addData(p.step, p.valLoss);
    m_plot->rescaleAxes();
    m_plot->xAxis->setRange(0, std::max(p.steps, 1));
    m_plot->yAxis->setRangeLower(0);
    m_plot->yAxis->setRangeUpper(m_plot->yAxis->range().upper * 1.1);
    if (m_val->dataCount() > 0) {
        const QCPRange r = m_plot->yAxis2->range();
        const double pad = std::max(0.05, 0.2 * r.size());
        m_plot->yAxis2->setRange(r.lower - pad, r.upper + pad);
    }
    m_plot->replot(QCustomPlot::rpQueuedReplot);
    m_info->setText(tr("Step %1/%2 · loss %3 (KD %4, CE %5)%6 · lr %7 · %8 tokens/s · ETA %9%10")
                        .arg(p.step)
                        .arg(p.steps)
                        .arg(p.loss, 0, 'f', 4)
                        .arg(p.kd, 0, 'f', 4)
                        .arg(p.ce, 0, 'f', 4)
                        .arg(std::isfinite(p.valLoss) ? tr(" · validation %1 (ppl %2)").arg(p.valLoss, 0, 'f', 4).arg(std::exp(p.valLoss), 0, 'f', 2)
                                                      : QString())
                        .arg(p.learningRate, 0, 'e', 2)
                        .arg(p.tokensPerSecond, 0, 'f', 0)
                        .arg(duration(p.etaSeconds))
                        .arg(isPaused() ? tr(" · <b>paused</b>") : QString()));
    emit stepReceived(p.step);
}

void DistillationWidget::resetCurves()
{
    m_received.clear();
    for (QCPGraph *g : {m_loss, m_kd, m_ce, m_val})
        g->data()->clear();
    m_plot->replot();
}

void DistillationWidget::updateButtons()
{
    const bool running = m_job && m_job->isRunning();
    m_start->setEnabled(!running && m_doc->model());
    m_pause->setEnabled(running);
    m_pause->setText(isPaused() ? tr("Resume") : tr("Pause"));
    m_cancel->setEnabled(running);
    for (QWidget *w : std::initializer_list<QWidget *>{m_student, m_steps, m_lr, m_temperature, m_alpha, m_batch, m_ctx})
        w->setEnabled(!running);
}

int DistillationWidget::curvePointCount() const
{
    return m_loss->dataCount();
}

int DistillationWidget::validationPointCount() const
{
    return m_val->dataCount();
}

QString DistillationWidget::resultText() const
{
    return m_result->text();
}

} // namespace bitsmith::ui

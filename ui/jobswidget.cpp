// jobswidget.cpp: rows kept in step with Job::changed(), times refreshed by a timer.
#include "jobswidget.h"

#include "jobmanager.h"

#include <QHeaderView>
#include <QProgressBar>
#include <QPushButton>
#include <QTimer>
#include <QTreeWidget>
#include <QVBoxLayout>

namespace bitsmith::ui {

namespace {

QString formatMs(qint64 ms)
{
    if (ms < 0)
        return QStringLiteral("…");
    const qint64 s = (ms + 500) / 1000;
    if (s < 60)
        return QStringLiteral("%1.%2 s").arg(ms / 1000).arg((ms % 1000) / 100);
    return QStringLiteral("%1:%2").arg(s / 60).arg(s % 60, 2, 10, QLatin1Char('0'));
}

enum Columns { NameCol, ProgressCol, StatusCol, ElapsedCol, RemainingCol, MemoryCol, CancelCol };

} // namespace

JobsWidget::JobsWidget(JobManager *jobs, QWidget *parent)
    : QWidget(parent)
    , m_jobs(jobs)
    , m_tree(new QTreeWidget(this))
{
    m_tree->setObjectName(QStringLiteral("jobsTree"));
    m_tree->setRootIsDecorated(false);
    m_tree->setHeaderLabels({tr("Job"), tr("Progress"), tr("Status"), tr("Elapsed"), tr("Remaining"), tr("Peak memory"), QString()});
    m_tree->header()->setSectionResizeMode(StatusCol, QHeaderView::Stretch);
    m_tree->header()->setStretchLastSection(false);
    m_tree->setColumnWidth(NameCol, 200);
    m_tree->setColumnWidth(ProgressCol, 160);
    auto *clear = new QPushButton(tr("Clear finished"), this);
    clear->setToolTip(tr("Remove finished, failed and cancelled jobs from the list"));
    connect(clear, &QPushButton::clicked, m_jobs, &JobManager::clearFinished);
    auto *layout = new QVBoxLayout(this);
    layout->setContentsMargins(4, 4, 4, 4);
    layout->addWidget(m_tree, 1);
    layout->addWidget(clear, 0, Qt::AlignRight);
    connect(m_jobs, &JobManager::jobAdded, this, &JobsWidget::addJob);
    connect(m_jobs, &JobManager::jobsCleared, this, &JobsWidget::rebuild);
    auto *timer = new QTimer(this);
    timer->setInterval(250);
    connect(timer, &QTimer::timeout, this, &JobsWidget::tick);
    timer->start();
    rebuild();
}

void JobsWidget::rebuild()
{
    m_tree->clear();
    for (Job *j : m_jobs->jobs())
        addJob(j);
}

void JobsWidget::addJob(Job *job)
{
    auto *item = new QTreeWidgetItem(m_tree);
    item->setText(NameCol, job->name());
    item->setData(NameCol, Qt::UserRole, QVariant::fromValue(static_cast<QObject *>(job)));
    auto *bar = new QProgressBar;
    bar->setRange(0, 1000);
    bar->setTextVisible(true);
    m_tree->setItemWidget(item, ProgressCol, bar);
    auto *cancel = new QPushButton(tr("Cancel"));
    cancel->setObjectName(QStringLiteral("cancelJob"));
    cancel->setToolTip(tr("Stop this job at its next check; partial results are discarded"));
    connect(cancel, &QPushButton::clicked, job, &Job::cancel);
    m_tree->setItemWidget(item, CancelCol, cancel);
    connect(job, &Job::changed, this, [this, job, item] { refresh(job, item); });
    refresh(job, item);
}

void JobsWidget::refresh(Job *job, QTreeWidgetItem *item)
{
    if (auto *bar = qobject_cast<QProgressBar *>(m_tree->itemWidget(item, ProgressCol)))
        bar->setValue(static_cast<int>(job->progress() * 1000));
    item->setText(StatusCol, job->status());
    item->setToolTip(StatusCol, job->error() ? job->error()->toString() + QLatin1Char('\n') + job->error()->hintLine()
                                             : job->status());
    item->setText(ElapsedCol, formatMs(job->elapsedMs()));
    item->setText(RemainingCol, job->isRunning() ? formatMs(job->remainingMs()) : QStringLiteral("–"));
    item->setText(MemoryCol, core::formatBytes(job->peakMemoryBytes()));
    item->setToolTip(MemoryCol, tr("Peak memory of the workbench while the job ran, without the page cache of mapped checkpoints"));
    if (auto *b = m_tree->itemWidget(item, CancelCol))
        b->setEnabled(job->isRunning());
}

void JobsWidget::tick()
{
    for (int i = 0; i < m_tree->topLevelItemCount(); ++i) {
        QTreeWidgetItem *item = m_tree->topLevelItem(i);
        auto *job = qobject_cast<Job *>(item->data(NameCol, Qt::UserRole).value<QObject *>());
        if (job && job->isRunning())
            refresh(job, item);
    }
}

} // namespace bitsmith::ui

// jobswidget.h: the Jobs view: one row per job with a progress bar, status, elapsed and
// remaining time, and a Cancel button.
#pragma once

#include <QWidget>

class QTreeWidget;
class QTreeWidgetItem;

namespace bitsmith::ui {

class Job;
class JobManager;

class JobsWidget : public QWidget
{
    Q_OBJECT

public:
    explicit JobsWidget(JobManager *jobs, QWidget *parent = nullptr);
    QTreeWidget *tree() const { return m_tree; }

private:
    void addJob(Job *job);
    void refresh(Job *job, QTreeWidgetItem *item);
    void rebuild();
    void tick();

    JobManager *m_jobs;
    QTreeWidget *m_tree;
};

} // namespace bitsmith::ui

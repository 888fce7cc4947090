// tryitwidget.h: the Try it view: a prompt, and the text the original and the compressed model
// (the current recipe, compressed by core on a worker thread) generate for it side by side, with
// the perplexity of both and their KL divergence — so a class can read what 2-bit does.
#pragma once

#include "projectdocument.h"
#include "workbenchtasks.h"

#include <QWidget>

class QLabel;
class QLineEdit;
class QPlainTextEdit;
class QPushButton;
class QSpinBox;

namespace bitsmith::ui {

class Job;
class JobManager;

class TryItWidget : public QWidget
{
    Q_OBJECT

public:
    TryItWidget(ProjectDocument *doc, JobManager *jobs, QWidget *parent = nullptr);

    void setPrompt(const QString &prompt);
    // Starts the job (compress with the current recipe, generate from both, measure).
    Job *run();
    QString originalText() const;
    QString compressedText() const;

private:
    void show(const TryItResult &r);

    ProjectDocument *m_doc;
    JobManager *m_jobs;
    QLineEdit *m_prompt = nullptr;
    QSpinBox *m_tokens = nullptr;
    QPushButton *m_run = nullptr;
    QPlainTextEdit *m_original = nullptr;
    QPlainTextEdit *m_compressed = nullptr;
    QLabel *m_originalInfo = nullptr;
    QLabel *m_compressedInfo = nullptr;
};

} // namespace bitsmith::ui

// tryitwidget.cpp: prompt → two generations, via a Job.
#include "tryitwidget.h"

#include "jobmanager.h"

#include <QGridLayout>
#include <QHBoxLayout>
#include <QLabel>
#include <QLineEdit>
#include <QPlainTextEdit>
#include <QPointer>
#include <QPushButton>
#include <QSpinBox>
#include <QVBoxLayout>

namespace bitsmith::ui {

TryItWidget::TryItWidget(ProjectDocument *doc, JobManager *jobs, QWidget *parent)
    : QWidget(parent)
    , m_doc(doc)
    , m_jobs(jobs)
{
    m_prompt = new QLineEdit(QStringLiteral("In the beginning"), this);
    m_prompt->setObjectName(QStringLiteral("tryItPrompt"));
    m_prompt->setToolTip(tr("The text both models continue (greedy decoding, so the difference comes from compression)"));
    m_tokens = new QSpinBox(this);
    m_tokens->setRange(1, 512);
    m_tokens->setValue(40);
    m_tokens->setSuffix(tr(" tokens"));
    m_run = new QPushButton(tr("Generate"), this);
    m_run->setObjectName(QStringLiteral("tryItRun"));
    m_run->setToolTip(tr("Compress the model with the current recipe (on a worker thread) and generate from both (Ctrl+G)"));
    connect(m_run, &QPushButton::clicked, this, &TryItWidget::run);
    connect(m_prompt, &QLineEdit::returnPressed, this, &TryItWidget::run);

    auto makeText = [this](const QString &name) {
        auto *t = new QPlainTextEdit(this);
        t->setObjectName(name);
        t->setReadOnly(true);
        QFont f = t->font();
        f.setPointSizeF(f.pointSizeF() + 1);
        t->setFont(f);
        return t;
    };
    m_original = makeText(QStringLiteral("tryItOriginal"));
    m_compressed = makeText(QStringLiteral("tryItCompressed"));
    m_originalInfo = new QLabel(tr("<b>Original</b>"), this);
    m_compressedInfo = new QLabel(tr("<b>Compressed</b> (current recipe)"), this);
    m_originalInfo->setToolTip(tr("Perplexity: exp(mean next-token loss) on the evaluation text; lower is better"));
    m_compressedInfo->setToolTip(tr("KL: how far the compressed model's next-token distribution is from the original's"));

    auto *top = new QHBoxLayout;
    top->addWidget(new QLabel(tr("Prompt:"), this));
    top->addWidget(m_prompt, 1);
    top->addWidget(m_tokens);
    top->addWidget(m_run);
    auto *grid = new QGridLayout;
    grid->addWidget(m_originalInfo, 0, 0);
    grid->addWidget(m_compressedInfo, 0, 1);
    grid->addWidget(m_original, 1, 0);
    grid->addWidget(m_compressed, 1, 1);
    auto *layout = new QVBoxLayout(this);
    layout->setContentsMargins(4, 4, 4, 4);
    layout->addLayout(top);
    layout->addLayout(grid, 1);
}

void TryItWidget::setPrompt(const QString &prompt)
{
    m_prompt->setText(prompt);
}

Job *TryItWidget::run()
{
    if (!m_doc->model())
        return nullptr;
    std::shared_ptr<const core::Model> model = m_doc->model();
    const core::Recipe recipe = m_doc->recipe();
    const QString prompt = m_prompt->text();
    const int tokens = m_tokens->value();
    QPointer<TryItWidget> self = this;
    m_run->setEnabled(false);
    m_compressed->setPlainText(tr("compressing and generating…"));
    Job *job = m_jobs->start(tr("Try it: “%1”").arg(prompt.left(24)),
                             [model, recipe, prompt, tokens, self](core::Feedback &fb) -> core::Expected<Job::Apply> {
                                 auto r = tryRecipe(model, recipe, prompt, tokens, fb);
                                 if (!r)
                                     return core::unexpected(r.error());
                                 return Job::Apply([self, res = *r] {
                                     if (self)
                                         self->show(res);
                                 });
                             });
    connect(job, &Job::finished, this, [this, job](bool ok) {
        m_run->setEnabled(true);
        if (!ok)
            m_compressed->setPlainText(job->error() ? job->error()->toString() : tr("failed"));
    });
    return job;
}

void TryItWidget::show(const TryItResult &r)
{
    const QString prompt = m_prompt->text();
    m_original->setPlainText(prompt + r.original);
    m_compressed->setPlainText(prompt + r.compressed);
    m_originalInfo->setText(tr("<b>Original</b> · perplexity %1").arg(r.originalPerplexity, 0, 'f', 2));
    m_compressedInfo->setText(tr("<b>Compressed</b> (current recipe, %1 bits/weight) · perplexity %2 · KL %3 nats")
                                  .arg(r.bitsPerWeight, 0, 'f', 2)
                                  .arg(r.compressedPerplexity, 0, 'f', 2)
                                  .arg(r.kl, 0, 'f', 4));
}

QString TryItWidget::originalText() const
{
    return m_original->toPlainText();
}

QString TryItWidget::compressedText() const
{
    return m_compressed->toPlainText();
}

} // namespace bitsmith::ui

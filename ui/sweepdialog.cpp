// sweepdialog.cpp: a form over SweepSpec.
#include "sweepdialog.h"

#include <QDialogButtonBox>
#include <QPushButton>
#include <QFormLayout>
#include <QLabel>
#include <QLineEdit>
#include <QSpinBox>
#include <QVBoxLayout>

namespace bitsmith::ui {

SweepDialog::SweepDialog(const SweepSpec &initial, QWidget *parent)
    : QDialog(parent)
    , m_candidates(new QLineEdit(initial.candidates, this))
    , m_windows(new QSpinBox(this))
    , m_ctx(new QSpinBox(this))
    , m_calibSequences(new QSpinBox(this))
    , m_calibLength(new QSpinBox(this))
    , m_evalText(new QLineEdit(initial.evalText, this))
    , m_calibText(new QLineEdit(initial.calibText, this))
    , m_initial(initial)
{
    setWindowTitle(tr("Run Sensitivity Analysis"));
    m_candidates->setObjectName(QStringLiteral("sweepCandidates"));
    m_candidates->setToolTip(tr("Comma-separated METHOD:wBITS[gGROUP] (no g = per output channel), e.g. "
                                "rtn:w2g64,rtn:w3g64,rtn:w4g128,gptq:w4g128,rtn:w8"));
    m_windows->setRange(1, 1000);
    m_windows->setValue(initial.options.windows);
    m_windows->setToolTip(tr("Evaluation windows: more is less noisy and slower (time grows linearly)"));
    m_ctx->setRange(2, 8192);
    m_ctx->setValue(initial.options.ctx);
    m_ctx->setSuffix(tr(" tokens"));
    m_calibSequences->setRange(1, 4096);
    m_calibSequences->setValue(initial.options.calibSequences);
    m_calibSequences->setToolTip(tr("Calibration sequences for GPTQ Hessians and the Hessian/imatrix proxies"));
    m_calibLength->setRange(2, 8192);
    m_calibLength->setValue(initial.options.calibLength);
    m_calibLength->setSuffix(tr(" tokens"));
    m_evalText->setPlaceholderText(tr("the model folder's eval.txt"));
    m_calibText->setPlaceholderText(tr("the model folder's calib.txt"));
    auto *form = new QFormLayout;
    form->addRow(tr("Candidates:"), m_candidates);
    form->addRow(tr("Evaluation windows:"), m_windows);
    form->addRow(tr("Window length:"), m_ctx);
    form->addRow(tr("Calibration sequences:"), m_calibSequences);
    form->addRow(tr("Calibration length:"), m_calibLength);
    form->addRow(tr("Evaluation text:"), m_evalText);
    form->addRow(tr("Calibration text:"), m_calibText);
    auto *buttons = new QDialogButtonBox(QDialogButtonBox::Ok | QDialogButtonBox::Cancel, this);
    buttons->button(QDialogButtonBox::Ok)->setText(tr("Run"));
    connect(buttons, &QDialogButtonBox::accepted, this, &SweepDialog::accept);
    connect(buttons, &QDialogButtonBox::rejected, this, &QDialog::reject);
    auto *note = new QLabel(tr("Each layer is compressed alone with each candidate and evaluated from its own block "
                               "onward (cached inputs); the job runs in the background."), this);
    note->setWordWrap(true);
    auto *layout = new QVBoxLayout(this);
    layout->addWidget(note);
    layout->addLayout(form);
    layout->addWidget(buttons);
}

SweepSpec SweepDialog::spec() const
{
    SweepSpec s = m_initial;
    s.candidates = m_candidates->text().trimmed();
    s.options.windows = m_windows->value();
    s.options.ctx = m_ctx->value();
    s.options.calibSequences = m_calibSequences->value();
    s.options.calibLength = m_calibLength->value();
    s.evalText = m_evalText->text().trimmed();
    s.calibText = m_calibText->text().trimmed();
    return s;
}

void SweepDialog::accept()
{
    auto parsed = core::parseSensitivitySettings(m_candidates->text().trimmed());
    if (!parsed) {
        m_candidates->setStyleSheet(QStringLiteral("color: #c0392b"));
        m_candidates->setToolTip(parsed.error().toString() + QLatin1Char('\n') + parsed.error().hintLine());
        return;
    }
    m_candidates->setStyleSheet({});
    QDialog::accept();
}

} // namespace bitsmith::ui

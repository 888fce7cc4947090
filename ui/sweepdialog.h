// sweepdialog.h: the settings of a sensitivity sweep (candidates, evaluation windows and length,
// calibration, texts) before it runs as a job. Opened with open(), never exec().
#pragma once

#include "workbenchtasks.h"

#include <QDialog>

class QLineEdit;
class QSpinBox;

namespace bitsmith::ui {

class SweepDialog : public QDialog
{
    Q_OBJECT

public:
    explicit SweepDialog(const SweepSpec &initial, QWidget *parent = nullptr);
    // The spec as edited; candidates are checked when accepted (an invalid list keeps it open).
    SweepSpec spec() const;

    void accept() override;

private:
    QLineEdit *m_candidates;
    QSpinBox *m_windows;
    QSpinBox *m_ctx;
    QSpinBox *m_calibSequences;
    QSpinBox *m_calibLength;
    QLineEdit *m_evalText;
    QLineEdit *m_calibText;
    SweepSpec m_initial;
};

} // namespace bitsmith::ui

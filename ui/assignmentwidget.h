// assignmentwidget.h: the Bit-width assignment view: the per-layer table (a combo in the Setting
// column), "set the selected layers to …", "fill to budget" (the exact allocator for a target
// bits-per-weight or size, with the layers it changed highlighted and listed), undo/redo, and
// the totals of the current recipe.
#pragma once

#include "projectdocument.h"

#include <QWidget>

class QComboBox;
class QDoubleSpinBox;
class QLabel;
class QPushButton;
class QTableView;

namespace bitsmith::ui {

class AssignmentWidget : public QWidget
{
    Q_OBJECT

public:
    explicit AssignmentWidget(ProjectDocument *doc, QWidget *parent = nullptr);

    QTableView *table() const { return m_table; }
    // Budget in effective bits per weight (mode "bpw") or MiB (mode "size").
    void setBudgetBitsPerWeight(double bpw);
    void setBudgetMiB(double mib);
    // Runs the allocator for the budget in the spin box; returns false (and says why) on failure.
    bool fillToBudget();
    // Sets every selected layer to the setting chosen in the "Set selected" combo.
    void applyToSelected(const QString &settingLabel);
    QString lastChangeText() const;

private:
    void updateTotals();
    void updateChoices();

    ProjectDocument *m_doc;
    QTableView *m_table = nullptr;
    QComboBox *m_setCombo = nullptr;
    QComboBox *m_budgetMode = nullptr;
    QDoubleSpinBox *m_budget = nullptr;
    QPushButton *m_fill = nullptr;
    QLabel *m_totals = nullptr;
    QLabel *m_changes = nullptr;
};

} // namespace bitsmith::ui

// assignmentwidget.cpp: the bit-width table and its actions; every edit goes through the document.
#include "assignmentwidget.h"

#include "assignmenttablemodel.h"
#include "formatting.h"
#include "settingdelegate.h"

#include <QComboBox>
#include <QDoubleSpinBox>
#include <QHBoxLayout>
#include <QHeaderView>
#include <QLabel>
#include <QPushButton>
#include <QTableView>
#include <QToolButton>
#include <QUndoStack>
#include <QVBoxLayout>

#include <cmath>

namespace bitsmith::ui {

AssignmentWidget::AssignmentWidget(ProjectDocument *doc, QWidget *parent)
    : QWidget(parent)
    , m_doc(doc)
{
    m_table = new QTableView(this);
    m_table->setObjectName(QStringLiteral("assignmentTable"));
    m_table->setModel(doc->layerModel());
    m_table->setSelectionModel(doc->selectionModel()); // the shared selection
    m_table->setSelectionBehavior(QAbstractItemView::SelectRows);
    m_table->setSelectionMode(QAbstractItemView::ExtendedSelection);
    m_table->setItemDelegateForColumn(AssignmentTableModel::SettingColumn,
                                      new SettingDelegate(AssignmentTableModel::ChoicesRole, m_table));
    m_table->setEditTriggers(QAbstractItemView::DoubleClicked | QAbstractItemView::SelectedClicked
                             | QAbstractItemView::EditKeyPressed);
    m_table->verticalHeader()->hide();
    m_table->verticalHeader()->setDefaultSectionSize(m_table->fontMetrics().height() + 6);
    m_table->setAlternatingRowColors(true);
    m_table->setShowGrid(false);
    m_table->setTextElideMode(Qt::ElideMiddle);
    m_table->horizontalHeader()->setSectionResizeMode(AssignmentTableModel::NameColumn, QHeaderView::Stretch);
    // Fixed widths from the font, not ResizeToContents: that re-measures every row on every
    // edit, which costs tens of milliseconds with hundreds of layers.
    const QFontMetrics fm = m_table->fontMetrics();
    const int widths[] = {0, fm.horizontalAdvance(QStringLiteral("11008 × 4096")), fm.horizontalAdvance(QStringLiteral("gptq:w4g128 ")),
                          fm.horizontalAdvance(QStringLiteral("Bits/weight")), fm.horizontalAdvance(QStringLiteral("999.99 KiB")),
                          fm.horizontalAdvance(QStringLiteral("Predicted Δloss"))};
    for (int c = 1; c < AssignmentTableModel::ColumnCount; ++c) {
        m_table->horizontalHeader()->setSectionResizeMode(c, QHeaderView::Interactive);
        m_table->setColumnWidth(c, widths[c] + 24);
    }

    m_setCombo = new QComboBox(this);
    m_setCombo->setObjectName(QStringLiteral("setSelectedCombo"));
    m_setCombo->setEditable(true);
    m_setCombo->setToolTip(tr("The setting to give every selected layer"));
    m_setCombo->setMinimumContentsLength(10);
    m_setCombo->setSizeAdjustPolicy(QComboBox::AdjustToMinimumContentsLengthWithIcon);
    auto *setButton = new QPushButton(tr("Set selected"), this);
    setButton->setObjectName(QStringLiteral("setSelectedButton"));
    setButton->setToolTip(tr("Give all selected layers this setting (one undo step)"));
    connect(setButton, &QPushButton::clicked, this, [this] { applyToSelected(m_setCombo->currentText()); });

    m_budgetMode = new QComboBox(this);
    m_budgetMode->addItem(tr("bits/weight"), QStringLiteral("bpw"));
    m_budgetMode->addItem(tr("MiB"), QStringLiteral("size"));
    m_budgetMode->setToolTip(tr("Budget as effective bits per weight over the layers, or their total size"));
    m_budget = new QDoubleSpinBox(this);
    m_budget->setObjectName(QStringLiteral("budgetSpin"));
    m_budget->setDecimals(3);
    m_budget->setRange(0.5, 1e6);
    m_budget->setValue(3.5);
    m_budget->setSingleStep(0.25);
    m_fill = new QPushButton(tr("Fill to budget"), this);
    m_fill->setObjectName(QStringLiteral("fillButton"));
    m_fill->setToolTip(tr("Choose a setting per layer minimising the predicted cost (sum of per-layer "
                          "sensitivities) within the budget: exact multiple-choice knapsack (Ctrl+B)"));
    connect(m_fill, &QPushButton::clicked, this, &AssignmentWidget::fillToBudget);
    connect(m_budgetMode, &QComboBox::currentIndexChanged, this, [this] {
        const bool size = m_budgetMode->currentData().toString() == QLatin1String("size");
        m_budget->setValue(size ? m_doc->totals().bytes / 1048576.0 : m_doc->totals().bitsPerWeight);
    });

    // Short buttons; what they would undo/redo is in their tooltips.
    auto *undo = new QToolButton(this);
    undo->setObjectName(QStringLiteral("undoButton"));
    undo->setText(tr("Undo"));
    auto *redo = new QToolButton(this);
    redo->setObjectName(QStringLiteral("redoButton"));
    redo->setText(tr("Redo"));
    QUndoStack *stack = m_doc->undoStack();
    connect(undo, &QToolButton::clicked, stack, &QUndoStack::undo);
    connect(redo, &QToolButton::clicked, stack, &QUndoStack::redo);
    auto updateUndo = [stack, undo, redo] {
        undo->setEnabled(stack->canUndo());
        redo->setEnabled(stack->canRedo());
        undo->setToolTip(stack->canUndo() ? tr("Undo: %1 (Ctrl+Z)").arg(stack->undoText()) : tr("Nothing to undo"));
        redo->setToolTip(stack->canRedo() ? tr("Redo: %1 (Ctrl+Shift+Z)").arg(stack->redoText()) : tr("Nothing to redo"));
    };
    connect(stack, &QUndoStack::indexChanged, this, updateUndo);
    connect(stack, &QUndoStack::cleanChanged, this, updateUndo);
    updateUndo();

    m_totals = new QLabel(this);
    m_totals->setObjectName(QStringLiteral("assignmentTotals"));
    m_changes = new QLabel(this);
    m_changes->setObjectName(QStringLiteral("assignmentChanges"));
    m_changes->setWordWrap(true);
    m_changes->setTextInteractionFlags(Qt::TextSelectableByMouse);
    m_changes->setSizePolicy(QSizePolicy::Ignored, QSizePolicy::Preferred);
    m_totals->setSizePolicy(QSizePolicy::Ignored, QSizePolicy::Preferred);

    auto *row1 = new QHBoxLayout;
    row1->addWidget(m_setCombo);
    row1->addWidget(setButton);
    row1->addSpacing(16);
    row1->addWidget(new QLabel(tr("Budget:"), this));
    row1->addWidget(m_budget);
    row1->addWidget(m_budgetMode);
    row1->addWidget(m_fill);
    row1->addSpacing(16);
    row1->addWidget(undo);
    row1->addWidget(redo);
    row1->addStretch(1);
    auto *layout = new QVBoxLayout(this);
    layout->setContentsMargins(4, 4, 4, 4);
    layout->addLayout(row1);
    layout->addWidget(m_totals);
    layout->addWidget(m_table, 1);
    layout->addWidget(m_changes);

    connect(m_doc, &ProjectDocument::recipeChanged, this, &AssignmentWidget::updateTotals);
    connect(m_doc, &ProjectDocument::sensitivityChanged, this, &AssignmentWidget::updateChoices);
    connect(m_doc, &ProjectDocument::modelChanged, this, &AssignmentWidget::updateChoices);
    connect(m_doc, &ProjectDocument::currentLayerChanged, this, [this](int layer) {
        if (layer >= 0)
            m_table->scrollTo(m_doc->layerModel()->index(layer, 0));
    });
    updateChoices();
    updateTotals();
}

void AssignmentWidget::updateChoices()
{
    const QString keep = m_setCombo->currentText();
    m_setCombo->clear();
    m_setCombo->addItems(m_doc->layerModel()->choices());
    if (!keep.isEmpty())
        m_setCombo->setCurrentText(keep);
    m_fill->setEnabled(m_doc->sensitivity().has_value());
    m_doc->layerModel()->setChangedRows({});
    m_changes->clear();
}

void AssignmentWidget::updateTotals()
{
    const ProjectDocument::Totals &t = m_doc->totals();
    QString text = tr("<b>%1</b> of %2 original · <b>%3</b> bits/weight (original %4) · predicted %5 <b>%6</b>")
                       .arg(formatBytes(static_cast<std::int64_t>(t.bytes)), formatBytes(static_cast<std::int64_t>(t.originalBytes)))
                       .arg(t.bitsPerWeight, 0, 'f', 3)
                       .arg(t.originalBitsPerWeight, 0, 'f', 1)
                       .arg(metricName(m_doc->costMetric()))
                       .arg(m_doc->sensitivity() ? QString::number(t.predicted, 'g', 4) : tr("n/a"));
    if (m_doc->sensitivity() && t.unknownLayers > 0)
        text += tr(" (%1 layers with unmeasured settings not counted)").arg(t.unknownLayers);
    m_totals->setText(text);
    m_totals->setToolTip(metricDescription(m_doc->costMetric()));
}

void AssignmentWidget::setBudgetBitsPerWeight(double bpw)
{
    m_budgetMode->setCurrentIndex(0);
    m_budget->setValue(bpw);
}

void AssignmentWidget::setBudgetMiB(double mib)
{
    m_budgetMode->setCurrentIndex(1);
    m_budget->setValue(mib);
}

bool AssignmentWidget::fillToBudget()
{
    const bool size = m_budgetMode->currentData().toString() == QLatin1String("size");
    const double bytes = size ? m_budget->value() * 1048576.0 : m_doc->bytesForBitsPerWeight(m_budget->value());
    const std::vector<core::LayerSetting> before = m_doc->settings();
    const ProjectDocument::Totals oldTotals = m_doc->totals();
    auto changed = m_doc->fillToBudget(bytes);
    if (!changed) {
        m_changes->setText(tr("<span style='color:#c0392b'>%1</span> %2")
                               .arg(changed.error().message.toHtmlEscaped(), changed.error().hintLine().toHtmlEscaped()));
        return false;
    }
    QSet<int> rows(changed->begin(), changed->end());
    m_doc->layerModel()->setChangedRows(rows);
    QStringList lines;
    for (int l : *changed) {
        if (lines.size() == 6) {
            lines << tr("… and %1 more").arg(changed->size() - 6);
            break;
        }
        lines << QStringLiteral("%1: %2 → %3")
                     .arg(m_doc->layers()[static_cast<std::size_t>(l)].name, before[static_cast<std::size_t>(l)].label(),
                          m_doc->setting(l).label());
    }
    const ProjectDocument::Totals &t = m_doc->totals();
    m_changes->setText(tr("Fill to budget changed %1 layers (highlighted): %2 bpw → %3 bpw, predicted %4 → %5.<br>%6")
                           .arg(changed->size())
                           .arg(oldTotals.bitsPerWeight, 0, 'f', 3)
                           .arg(t.bitsPerWeight, 0, 'f', 3)
                           .arg(oldTotals.predicted, 0, 'g', 4)
                           .arg(t.predicted, 0, 'g', 4)
                           .arg(lines.join(QStringLiteral("; "))));
    return true;
}

void AssignmentWidget::applyToSelected(const QString &settingLabel)
{
    core::LayerSetting s;
    const QString text = settingLabel.trimmed();
    if (text != QLatin1String("dense")) {
        auto parsed = core::parseSensitivitySettings(text);
        if (!parsed || parsed->size() != 1) {
            m_changes->setText(tr("“%1” is not a setting: use dense or METHOD:wBITS[gGROUP]").arg(text.toHtmlEscaped()));
            return;
        }
        s = core::LayerSetting::fromSensitivity(parsed->front());
    }
    m_doc->setLayerSettings(m_doc->selectedLayers(), s);
}

QString AssignmentWidget::lastChangeText() const
{
    return m_changes->text();
}

} // namespace bitsmith::ui

// settingdelegate.cpp: editable QComboBox editor; the choice is committed as soon as it is picked.
#include "settingdelegate.h"

#include <QComboBox>

namespace bitsmith::ui {

SettingDelegate::SettingDelegate(int choicesRole, QObject *parent)
    : QStyledItemDelegate(parent)
    , m_choicesRole(choicesRole)
{}

QWidget *SettingDelegate::createEditor(QWidget *parent, const QStyleOptionViewItem &, const QModelIndex &index) const
{
    auto *combo = new QComboBox(parent);
    combo->setEditable(true);
    combo->addItems(index.data(m_choicesRole).toStringList());
    combo->setToolTip(tr("dense, or METHOD:wBITS[gGROUP], e.g. rtn:w4g128, gptq:w3g64, rtn:w8 (per channel)"));
    connect(combo, &QComboBox::activated, this, [this, combo] {
        auto *self = const_cast<SettingDelegate *>(this);
        emit self->commitData(combo);
        emit self->closeEditor(combo);
    });
    return combo;
}

void SettingDelegate::setEditorData(QWidget *editor, const QModelIndex &index) const
{
    auto *combo = static_cast<QComboBox *>(editor);
    combo->setCurrentText(index.data(Qt::EditRole).toString());
}

void SettingDelegate::setModelData(QWidget *editor, QAbstractItemModel *model, const QModelIndex &index) const
{
    model->setData(index, static_cast<QComboBox *>(editor)->currentText(), Qt::EditRole);
}

} // namespace bitsmith::ui

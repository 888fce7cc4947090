// settingdelegate.h: a combo box editor for "Setting" cells (dense or a candidate setting, or
// any METHOD:wBITS[gGROUP] typed in). It commits through setData(), i.e. an undo command.
#pragma once

#include <QStyledItemDelegate>

namespace bitsmith::ui {

class SettingDelegate : public QStyledItemDelegate
{
    Q_OBJECT

public:
    // `choicesModelRole`: the role giving the QStringList of choices for an index.
    explicit SettingDelegate(int choicesRole, QObject *parent = nullptr);
    QWidget *createEditor(QWidget *parent, const QStyleOptionViewItem &option, const QModelIndex &index) const override;
    void setEditorData(QWidget *editor, const QModelIndex &index) const override;
    void setModelData(QWidget *editor, QAbstractItemModel *model, const QModelIndex &index) const override;

private:
    int m_choicesRole;
};

} // namespace bitsmith::ui

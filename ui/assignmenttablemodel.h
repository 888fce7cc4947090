// assignmenttablemodel.h: one row per compressible layer with its current setting (editable),
// bits per weight, size and predicted cost. Owned by ProjectDocument; its QItemSelectionModel is
// the selection every view shares. setData() never edits: it asks the document, which pushes an
// undo command.
#pragma once

#include <QAbstractTableModel>
#include <QSet>

namespace bitsmith::ui {

class ProjectDocument;

class AssignmentTableModel : public QAbstractTableModel
{
    Q_OBJECT

public:
    enum Column { NameColumn, ShapeColumn, SettingColumn, BitsColumn, SizeColumn, CostColumn, ColumnCount };
    enum Role {
        SortRole = Qt::UserRole,
        // The candidate labels an editor offers for a row ("dense", then the sensitivity settings).
        ChoicesRole,
    };

    AssignmentTableModel(ProjectDocument *doc, QObject *parent = nullptr);

    int rowCount(const QModelIndex &parent = {}) const override;
    int columnCount(const QModelIndex &parent = {}) const override;
    QVariant data(const QModelIndex &index, int role = Qt::DisplayRole) const override;
    bool setData(const QModelIndex &index, const QVariant &value, int role = Qt::EditRole) override;
    Qt::ItemFlags flags(const QModelIndex &index) const override;
    QVariant headerData(int section, Qt::Orientation orientation, int role = Qt::DisplayRole) const override;

    // The setting labels offered by editors.
    QStringList choices() const;
    // Highlights rows changed by the last "fill to budget" (cleared by the next one).
    void setChangedRows(const QSet<int> &rows);

    // Called by the document.
    void beginReset() { beginResetModel(); }
    void endReset() { endResetModel(); }
    void settingsChanged();

private:
    ProjectDocument *m_doc;
    QSet<int> m_changed;
};

} // namespace bitsmith::ui

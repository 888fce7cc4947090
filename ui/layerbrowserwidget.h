// layerbrowserwidget.h: the layer table with its filter box: what the user looks at to find the
// tensors worth compressing. Owns the table model and the sort/filter proxy.
#pragma once

#include "core/model.h"

#include <QWidget>

#include <memory>

class QLabel;
class QLineEdit;
class QSortFilterProxyModel;
class QTableView;

namespace bitsmith::ui {

class LayerTableModel;
class ProjectDocument;

class LayerBrowserWidget : public QWidget
{
    Q_OBJECT

public:
    explicit LayerBrowserWidget(QWidget *parent = nullptr);

    // Shows `model`'s weights in checkpoint order; null shows an empty table.
    void setModel(std::shared_ptr<const core::Model> model);

    // Connects the table to the project: recipe columns, the summary line (total size, effective
    // bits per weight vs the original) and the shared layer selection.
    void setDocument(ProjectDocument *doc);
    QLabel *recipeSummary() const { return m_summary; }

    // Case-insensitive substring over name and kind; empty shows every row.
    void setFilterText(const QString &text);
    QString filterText() const;

    LayerTableModel *tableModel() const { return m_tableModel; }
    QSortFilterProxyModel *proxyModel() const { return m_proxy; }
    QTableView *tableView() const { return m_view; }
    QLineEdit *filterEdit() const { return m_filter; }

private:
    void updateCountLabel();
    void resizeColumnsToContents();
    void updateSummary();
    void selectionFromView();
    void selectionFromDocument();

    LayerTableModel *m_tableModel = nullptr;
    QSortFilterProxyModel *m_proxy = nullptr;
    QLineEdit *m_filter = nullptr;
    QLabel *m_count = nullptr;
    QTableView *m_view = nullptr;
    QLabel *m_summary = nullptr;
    ProjectDocument *m_doc = nullptr;
    bool m_syncing = false;
};

} // namespace bitsmith::ui

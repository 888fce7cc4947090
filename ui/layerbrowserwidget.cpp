// layerbrowserwidget.cpp: filter box + sortable table over LayerTableModel.
#include "layerbrowserwidget.h"

#include "layertablemodel.h"

#include <QHBoxLayout>
#include <QHeaderView>
#include <QLabel>
#include <QLineEdit>
#include <QSortFilterProxyModel>
#include <QTableView>
#include <QVBoxLayout>

namespace bitsmith::ui {

LayerBrowserWidget::LayerBrowserWidget(QWidget *parent)
    : QWidget(parent)
    , m_tableModel(new LayerTableModel(this))
    , m_proxy(new QSortFilterProxyModel(this))
    , m_filter(new QLineEdit(this))
    , m_count(new QLabel(this))
    , m_view(new QTableView(this))
{
    m_proxy->setSourceModel(m_tableModel);
    m_proxy->setSortRole(LayerTableModel::SortRole);
    m_proxy->setFilterRole(LayerTableModel::FilterRole);
    m_proxy->setFilterKeyColumn(LayerTableModel::NameColumn);
    m_proxy->setFilterCaseSensitivity(Qt::CaseInsensitive);

    m_filter->setObjectName(QStringLiteral("layerFilter"));
    m_filter->setPlaceholderText(tr("Filter by name or kind, e.g. mlp.down or layers.3."));
    m_filter->setClearButtonEnabled(true);
    m_filter->setToolTip(tr("Shows the tensors whose name or kind contains this text "
                            "(case-insensitive)"));
    connect(m_filter, &QLineEdit::textChanged, m_proxy,
            &QSortFilterProxyModel::setFilterFixedString);

    m_count->setObjectName(QStringLiteral("layerCount"));
    m_count->setAlignment(Qt::AlignRight | Qt::AlignVCenter);

    m_view->setObjectName(QStringLiteral("layerTable"));
    m_view->setModel(m_proxy);
    m_view->setSelectionBehavior(QAbstractItemView::SelectRows);
    m_view->setAlternatingRowColors(true);
    m_view->setWordWrap(false);
    // Tensor names differ at both ends ("layers.3" ... "down_proj.weight"): keep both visible.
    m_view->setTextElideMode(Qt::ElideMiddle);
    m_view->setShowGrid(false);
    m_view->verticalHeader()->hide();
    m_view->verticalHeader()->setDefaultSectionSize(m_view->fontMetrics().height() + 8);
    QHeaderView *header = m_view->horizontalHeader();
    header->setHighlightSections(false);
    header->setStretchLastSection(false);
    header->setSectionResizeMode(LayerTableModel::NameColumn, QHeaderView::Stretch);
    // Start in checkpoint order (the network's order); a third click on a header returns to it.
    header->setSortIndicator(-1, Qt::AscendingOrder);
    header->setSortIndicatorClearable(true);
    m_view->setSortingEnabled(true);

    connect(m_proxy, &QAbstractItemModel::rowsInserted, this, &LayerBrowserWidget::updateCountLabel);
    connect(m_proxy, &QAbstractItemModel::rowsRemoved, this, &LayerBrowserWidget::updateCountLabel);
    connect(m_proxy, &QAbstractItemModel::modelReset, this, &LayerBrowserWidget::updateCountLabel);
    connect(m_proxy, &QAbstractItemModel::layoutChanged, this, &LayerBrowserWidget::updateCountLabel);

    auto *filterRow = new QHBoxLayout;
    filterRow->addWidget(m_filter, 1);
    filterRow->addWidget(m_count);
    auto *layout = new QVBoxLayout(this);
    layout->setContentsMargins(6, 6, 6, 6);
    layout->addLayout(filterRow);
    layout->addWidget(m_view, 1);

    updateCountLabel();
}

void LayerBrowserWidget::setModel(std::shared_ptr<const core::Model> model)
{
    m_tableModel->setModel(std::move(model));
    resizeColumnsToContents();
    updateCountLabel();
}

void LayerBrowserWidget::setFilterText(const QString &text)
{
    m_filter->setText(text); // textChanged updates the proxy
}

QString LayerBrowserWidget::filterText() const
{
    return m_filter->text();
}

void LayerBrowserWidget::updateCountLabel()
{
    const int total = m_tableModel->rowCount();
    const int shown = m_proxy->rowCount();
    if (shown == total)
        m_count->setText(total == 1 ? tr("1 tensor") : tr("%1 tensors").arg(total));
    else
        m_count->setText(tr("%1 of %2 tensors").arg(shown).arg(total));
}

void LayerBrowserWidget::resizeColumnsToContents()
{
    // The name column takes the remaining width; the others fit their contents and header.
    QHeaderView *header = m_view->horizontalHeader();
    for (int c = 0; c < LayerTableModel::ColumnCount; ++c) {
        if (c == LayerTableModel::NameColumn)
            continue;
        m_view->resizeColumnToContents(c);
        header->resizeSection(c, header->sectionSize(c) + 4);
    }
}

} // namespace bitsmith::ui

// layerbrowserwidget.cpp: filter box + sortable table over LayerTableModel.
#include "layerbrowserwidget.h"

#include "formatting.h"
#include "layertablemodel.h"
#include "projectdocument.h"
#include "settingdelegate.h"

#include <QAction>
#include <QHBoxLayout>
#include <QHeaderView>
#include <QItemSelectionModel>
#include <QLabel>
#include <QLineEdit>
#include <QMenu>
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
    , m_summary(new QLabel(this))
{
    m_summary->setObjectName(QStringLiteral("recipeSummary"));
    m_summary->setTextFormat(Qt::RichText);
    m_summary->setWordWrap(true);
    m_summary->setSizePolicy(QSizePolicy::Ignored, QSizePolicy::Preferred);
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
    layout->addWidget(m_summary);

    updateCountLabel();
}

void LayerBrowserWidget::setModel(std::shared_ptr<const core::Model> model)
{
    m_tableModel->setModel(std::move(model));
    resizeColumnsToContents();
    updateCountLabel();
}

void LayerBrowserWidget::setDocument(ProjectDocument *doc)
{
    m_doc = doc;
    m_tableModel->setDocument(doc);
    m_view->setItemDelegateForColumn(LayerTableModel::SettingColumn,
                                     new SettingDelegate(LayerTableModel::ChoicesRole, m_view));
    m_view->setEditTriggers(QAbstractItemView::DoubleClicked | QAbstractItemView::EditKeyPressed);
    m_view->setSelectionMode(QAbstractItemView::ExtendedSelection);
    // The recipe columns need the room: the block is in the name, the parameter count in the
    // shape and the share in the tooltip; all come back from the header's context menu.
    QHeaderView *header = m_view->horizontalHeader();
    header->setSectionHidden(LayerTableModel::BlockColumn, true);
    header->setSectionHidden(LayerTableModel::ShareColumn, true);
    header->setSectionHidden(LayerTableModel::ParametersColumn, true); // the shape says it
    header->setContextMenuPolicy(Qt::CustomContextMenu);
    connect(header, &QWidget::customContextMenuRequested, this, [this, header](const QPoint &pos) {
        QMenu menu(this);
        for (int c = 1; c < LayerTableModel::ColumnCount; ++c) {
            QAction *a = menu.addAction(m_tableModel->headerData(c, Qt::Horizontal).toString());
            a->setCheckable(true);
            a->setChecked(!header->isSectionHidden(c));
            connect(a, &QAction::toggled, header, [header, c](bool on) { header->setSectionHidden(c, !on); });
        }
        menu.exec(header->mapToGlobal(pos));
    });
    connect(doc, &ProjectDocument::recipeChanged, this, &LayerBrowserWidget::updateSummary);
    connect(doc, &ProjectDocument::modelChanged, this, &LayerBrowserWidget::updateSummary);
    connect(doc, &ProjectDocument::selectionChanged, this, &LayerBrowserWidget::selectionFromDocument);
    connect(doc, &ProjectDocument::currentLayerChanged, this, &LayerBrowserWidget::selectionFromDocument);
    connect(m_view->selectionModel(), &QItemSelectionModel::selectionChanged, this, &LayerBrowserWidget::selectionFromView);
    updateSummary();
}

void LayerBrowserWidget::updateSummary()
{
    if (!m_doc || !m_doc->model()) {
        m_summary->clear();
        return;
    }
    const ProjectDocument::Totals &t = m_doc->totals();
    const double modelBytes = static_cast<double>(m_doc->model()->totalStoredBytes());
    const double total = modelBytes - t.originalBytes + t.bytes;
    const double params = static_cast<double>(m_doc->model()->totalParameters());
    m_summary->setText(tr("Recipe: model <b>%1</b> (original %2, %3×) · compressible layers <b>%4</b> of %5 · "
                          "effective <b>%6</b> bits/weight (original %7)%8")
                           .arg(formatBytes(static_cast<std::int64_t>(total)), formatBytes(static_cast<std::int64_t>(modelBytes)))
                           .arg(total > 0 ? modelBytes / total : 0.0, 0, 'f', 2)
                           .arg(formatBytes(static_cast<std::int64_t>(t.bytes)), formatBytes(static_cast<std::int64_t>(t.originalBytes)))
                           .arg(t.bitsPerWeight, 0, 'f', 3)
                           .arg(t.originalBitsPerWeight, 0, 'f', 1)
                           .arg(m_doc->sensitivity() ? tr(" · predicted %1 %2").arg(metricName(m_doc->costMetric()))
                                                           .arg(t.predicted, 0, 'g', 4)
                                                     : QString()));
    m_summary->setToolTip(tr("%1 parameters in the whole model; bits per weight over the compressible linear layers")
                              .arg(formatCount(static_cast<std::int64_t>(params))));
}

void LayerBrowserWidget::selectionFromView()
{
    if (!m_doc || m_syncing)
        return;
    std::vector<int> layers;
    for (const QModelIndex &i : m_view->selectionModel()->selectedRows()) {
        const int l = m_tableModel->layerOfRow(m_proxy->mapToSource(i).row());
        if (l >= 0)
            layers.push_back(l);
    }
    const QModelIndex cur = m_view->selectionModel()->currentIndex();
    int current = cur.isValid() ? m_tableModel->layerOfRow(m_proxy->mapToSource(cur).row()) : -1;
    if (current < 0 && !layers.empty())
        current = layers.front();
    if (layers.empty())
        return; // a non-compressible tensor: keep the shared selection
    m_syncing = true;
    m_doc->selectLayers(layers, current);
    m_syncing = false;
}

void LayerBrowserWidget::selectionFromDocument()
{
    if (!m_doc || m_syncing)
        return;
    m_syncing = true;
    QItemSelection sel;
    for (int l : m_doc->selectedLayers()) {
        const QModelIndex i = m_proxy->mapFromSource(m_tableModel->index(m_tableModel->rowOfLayer(l), 0));
        if (i.isValid())
            sel.select(i, i.siblingAtColumn(LayerTableModel::ColumnCount - 1));
    }
    m_view->selectionModel()->select(sel, QItemSelectionModel::ClearAndSelect);
    const QModelIndex cur = m_proxy->mapFromSource(m_tableModel->index(m_tableModel->rowOfLayer(m_doc->currentLayer()), 0));
    if (cur.isValid()) {
        m_view->selectionModel()->setCurrentIndex(cur, QItemSelectionModel::NoUpdate);
        m_view->scrollTo(cur);
    }
    m_syncing = false;
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

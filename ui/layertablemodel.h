// layertablemodel.h: the weights of a loaded model as a read-only table, one row per tensor in
// checkpoint order. Views sort and filter it through a QSortFilterProxyModel using the roles below.
#pragma once

#include "core/model.h"

#include <QAbstractTableModel>

#include <memory>
#include <vector>

namespace bitsmith::ui {

class ProjectDocument;

class LayerTableModel : public QAbstractTableModel
{
    Q_OBJECT

public:
    enum Column { NameColumn, BlockColumn, KindColumn, ShapeColumn, ParametersColumn, DTypeColumn,
                  BytesColumn, ShareColumn, SettingColumn, EffectiveBitsColumn, SizeColumn, ColumnCount };

    enum Role {
        // The value to sort by: numbers for numeric columns (so 8192 < 16384), a name key with
        // zero-padded block numbers (so layers.2 < layers.10). Set as the proxy's sortRole.
        SortRole = Qt::UserRole,
        // "<name> <kind>" on every column: the text that the filter box matches.
        FilterRole,
        // The setting choices of a compressible layer's Setting cell (for the combo editor).
        ChoicesRole,
    };

    explicit LayerTableModel(QObject *parent = nullptr);

    // Shows `model`'s weights (null clears the table). Keeps the model alive while shown.
    void setModel(std::shared_ptr<const core::Model> model);
    // The project whose recipe fills the Setting / Effective bits / Size columns (may be null:
    // then those columns show the weights as stored). Edits of Setting go to the document.
    void setDocument(ProjectDocument *doc);
    ProjectDocument *document() const { return m_doc; }
    // The compressible layer (document index) of a source row, -1 for other tensors.
    int layerOfRow(int row) const;
    // The source row of a compressible layer, -1 if none.
    int rowOfLayer(int layer) const;
    bool setData(const QModelIndex &index, const QVariant &value, int role = Qt::EditRole) override;
    Qt::ItemFlags flags(const QModelIndex &index) const override;
    const std::shared_ptr<const core::Model> &model() const { return m_model; }

    // The weight shown in `row` (a source row, not a proxy row); null when out of range.
    const core::WeightInfo *weightAt(int row) const;

    int rowCount(const QModelIndex &parent = {}) const override;
    int columnCount(const QModelIndex &parent = {}) const override;
    QVariant data(const QModelIndex &index, int role = Qt::DisplayRole) const override;
    QVariant headerData(int section, Qt::Orientation orientation,
                        int role = Qt::DisplayRole) const override;

private:
    QVariant displayValue(const core::WeightInfo &w, int column) const;
    QVariant sortValue(const core::WeightInfo &w, int column) const;
    QString toolTip(const core::WeightInfo &w) const;

    void rebuildLayerMap();

    std::shared_ptr<const core::Model> m_model;
    std::int64_t m_totalParameters = 0;
    ProjectDocument *m_doc = nullptr;
    std::vector<int> m_layerOfRow; // per source row
    std::vector<int> m_rowOfLayer; // per document layer
};

} // namespace bitsmith::ui

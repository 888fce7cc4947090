// assignmenttablemodel.cpp: display and edit roles of the bit-width table.
#include "assignmenttablemodel.h"

#include "formatting.h"
#include "projectdocument.h"

#include <QBrush>
#include <QColor>
#include <QFont>

#include <cmath>

namespace bitsmith::ui {

AssignmentTableModel::AssignmentTableModel(ProjectDocument *doc, QObject *parent)
    : QAbstractTableModel(parent)
    , m_doc(doc)
{}

int AssignmentTableModel::rowCount(const QModelIndex &parent) const
{
    return parent.isValid() ? 0 : m_doc->layerCount();
}

int AssignmentTableModel::columnCount(const QModelIndex &parent) const
{
    return parent.isValid() ? 0 : ColumnCount;
}

QStringList AssignmentTableModel::choices() const
{
    QStringList out{QStringLiteral("dense")};
    if (m_doc->sensitivity())
        for (const core::SensitivitySetting &s : m_doc->sensitivity()->settings)
            out << s.label();
    for (const QString &extra : {QStringLiteral("rtn:w8"), QStringLiteral("rtn:w4g128"), QStringLiteral("rtn:w3g64"),
                                 QStringLiteral("rtn:w2g64"), QStringLiteral("gptq:w4g128"), QStringLiteral("gptq:w3g64")})
        if (!out.contains(extra))
            out << extra;
    return out;
}

QVariant AssignmentTableModel::data(const QModelIndex &index, int role) const
{
    if (!index.isValid() || index.row() >= m_doc->layerCount())
        return {};
    const int row = index.row();
    const core::AssignableLayer &layer = m_doc->layers()[static_cast<std::size_t>(row)];
    const core::LayerSetting &setting = m_doc->setting(row);
    const double bytes = m_doc->layerBytes(row, setting);
    const double bpw = 8.0 * bytes / static_cast<double>(std::max<std::int64_t>(1, layer.parameters()));
    const double cost = m_doc->predictedCost(row, setting);
    switch (role) {
    case Qt::DisplayRole:
    case Qt::EditRole:
        switch (index.column()) {
        case NameColumn: return layer.name;
        case ShapeColumn: return formatShape({layer.rows, layer.cols});
        case SettingColumn: return setting.label();
        case BitsColumn: return QString::number(bpw, 'f', 3);
        case SizeColumn: return formatBytes(static_cast<std::int64_t>(std::llround(bytes)));
        case CostColumn: return std::isnan(cost) ? QStringLiteral("n/a") : QString::number(cost, 'g', 4);
        }
        return {};
    case SortRole:
        switch (index.column()) {
        case NameColumn: return row;
        case ShapeColumn: return QVariant::fromValue(static_cast<qlonglong>(layer.parameters()));
        case SettingColumn: return setting.label();
        case BitsColumn: return bpw;
        case SizeColumn: return bytes;
        case CostColumn: return std::isnan(cost) ? -1.0 : cost;
        }
        return {};
    case ChoicesRole:
        return choices();
    case Qt::ToolTipRole:
        if (index.column() == CostColumn)
            return metricDescription(m_doc->costMetric());
        if (index.column() == SettingColumn)
            return tr("Double-click to choose a setting; select several rows and use “Set selected” to change them at once");
        return layer.name;
    case Qt::BackgroundRole:
        if (m_changed.contains(row))
            return QBrush(QColor(255, 200, 60, 90));
        return {};
    case Qt::TextAlignmentRole:
        return QVariant::fromValue(index.column() == NameColumn || index.column() == SettingColumn
                                       ? Qt::AlignLeft | Qt::AlignVCenter
                                       : Qt::AlignRight | Qt::AlignVCenter);
    }
    return {};
}

bool AssignmentTableModel::setData(const QModelIndex &index, const QVariant &value, int role)
{
    if (!index.isValid() || index.column() != SettingColumn || role != Qt::EditRole)
        return false;
    const QString text = value.toString().trimmed();
    core::LayerSetting s;
    if (text != QLatin1String("dense")) {
        auto parsed = core::parseSensitivitySettings(text);
        if (!parsed || parsed->size() != 1)
            return false;
        s = core::LayerSetting::fromSensitivity(parsed->front());
    }
    m_doc->setLayerSetting(index.row(), s); // an undo command; the document notifies us
    return true;
}

Qt::ItemFlags AssignmentTableModel::flags(const QModelIndex &index) const
{
    Qt::ItemFlags f = QAbstractTableModel::flags(index);
    if (index.column() == SettingColumn)
        f |= Qt::ItemIsEditable;
    return f;
}

QVariant AssignmentTableModel::headerData(int section, Qt::Orientation orientation, int role) const
{
    if (orientation != Qt::Horizontal)
        return {};
    if (role == Qt::DisplayRole) {
        switch (section) {
        case NameColumn: return tr("Layer");
        case ShapeColumn: return tr("Shape");
        case SettingColumn: return tr("Setting");
        case BitsColumn: return tr("Bits/weight");
        case SizeColumn: return tr("Size");
        case CostColumn: return tr("Predicted %1").arg(metricName(m_doc->costMetric()));
        }
    }
    if (role == Qt::ToolTipRole) {
        switch (section) {
        case SettingColumn: return tr("technique:wBITS[gGROUP] (no g = per output channel), or dense");
        case BitsColumn: return tr("Effective bits per weight, scales and zero points counted");
        case SizeColumn: return tr("Storage of the layer under its setting");
        case CostColumn: return metricDescription(m_doc->costMetric());
        }
    }
    return {};
}

void AssignmentTableModel::setChangedRows(const QSet<int> &rows)
{
    m_changed = rows;
    if (rowCount() > 0)
        emit dataChanged(index(0, 0), index(rowCount() - 1, ColumnCount - 1), {Qt::BackgroundRole});
}

void AssignmentTableModel::settingsChanged()
{
    if (rowCount() > 0)
        emit dataChanged(index(0, 0), index(rowCount() - 1, ColumnCount - 1));
    emit headerDataChanged(Qt::Horizontal, CostColumn, CostColumn);
}

} // namespace bitsmith::ui

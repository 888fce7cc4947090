// layertablemodel.cpp: display, sort and tooltip values of the layer table.
#include "layertablemodel.h"

#include "assignmenttablemodel.h"
#include "formatting.h"
#include "projectdocument.h"

#include <QRegularExpression>

#include <cmath>

namespace bitsmith::ui {

namespace {

// "model.layers.2.mlp" -> "model.layers.000002.mlp": plain string comparison of the result
// orders numbers by value, which a QSortFilterProxyModel cannot do on its own.
QString naturalSortKey(const QString &name)
{
    static const QRegularExpression digits(QStringLiteral("\\d+"));
    QString key;
    qsizetype last = 0;
    for (auto it = digits.globalMatch(name); it.hasNext();) {
        const auto m = it.next();
        key += name.mid(last, m.capturedStart() - last);
        key += m.captured().rightJustified(9, QLatin1Char('0'));
        last = m.capturedEnd();
    }
    key += name.mid(last);
    return key;
}

QString roleDescription(core::WeightRole role)
{
    using R = core::WeightRole;
    switch (role) {
    case R::Embedding: return QStringLiteral("token embedding");
    case R::AttnNorm: return QStringLiteral("RMSNorm before attention");
    case R::LinearQ: return QStringLiteral("attention query projection");
    case R::LinearK: return QStringLiteral("attention key projection");
    case R::LinearV: return QStringLiteral("attention value projection");
    case R::LinearO: return QStringLiteral("attention output projection");
    case R::BiasQ: case R::BiasK: case R::BiasV: case R::BiasO:
        return QStringLiteral("attention projection bias");
    case R::MlpNorm: return QStringLiteral("RMSNorm before the MLP");
    case R::LinearGate: return QStringLiteral("MLP gate projection (SwiGLU)");
    case R::LinearUp: return QStringLiteral("MLP up projection");
    case R::LinearDown: return QStringLiteral("MLP down projection");
    case R::BiasGate: case R::BiasUp: case R::BiasDown: return QStringLiteral("MLP projection bias");
    case R::FinalNorm: return QStringLiteral("final RMSNorm");
    case R::LmHead: return QStringLiteral("output head (logits)");
    case R::QNorm: return QStringLiteral("RMSNorm over each query head (Qwen3)");
    case R::KNorm: return QStringLiteral("RMSNorm over each key head (Qwen3)");
    case R::PostAttnNorm: return QStringLiteral("RMSNorm of the attention output (Gemma)");
    case R::PostMlpNorm: return QStringLiteral("RMSNorm of the MLP output (Gemma)");
    }
    return {};
}

} // namespace

LayerTableModel::LayerTableModel(QObject *parent)
    : QAbstractTableModel(parent)
{}

void LayerTableModel::setModel(std::shared_ptr<const core::Model> model)
{
    beginResetModel();
    m_model = std::move(model);
    m_totalParameters = m_model ? m_model->totalParameters() : 0;
    rebuildLayerMap();
    endResetModel();
}

void LayerTableModel::setDocument(ProjectDocument *doc)
{
    if (m_doc)
        disconnect(m_doc, nullptr, this, nullptr);
    m_doc = doc;
    if (m_doc) {
        auto refresh = [this] {
            if (rowCount() > 0)
                emit dataChanged(index(0, SettingColumn), index(rowCount() - 1, SizeColumn));
        };
        connect(m_doc, &ProjectDocument::recipeChanged, this, refresh);
        connect(m_doc, &ProjectDocument::modelChanged, this, [this] {
            beginResetModel();
            rebuildLayerMap();
            endResetModel();
        });
    }
    beginResetModel();
    rebuildLayerMap();
    endResetModel();
}

void LayerTableModel::rebuildLayerMap()
{
    const int rows = rowCount();
    m_layerOfRow.assign(static_cast<std::size_t>(rows), -1);
    m_rowOfLayer.assign(m_doc ? static_cast<std::size_t>(m_doc->layerCount()) : 0, -1);
    // Only when the document shows this very model (it follows the window's model).
    if (!m_doc || !m_model || m_doc->model() != m_model)
        return;
    for (int r = 0; r < rows; ++r) {
        const int l = m_doc->layerIndex(m_model->weights()[static_cast<std::size_t>(r)].name);
        m_layerOfRow[static_cast<std::size_t>(r)] = l;
        if (l >= 0)
            m_rowOfLayer[static_cast<std::size_t>(l)] = r;
    }
}

int LayerTableModel::layerOfRow(int row) const
{
    return row >= 0 && row < static_cast<int>(m_layerOfRow.size()) ? m_layerOfRow[static_cast<std::size_t>(row)] : -1;
}

int LayerTableModel::rowOfLayer(int layer) const
{
    return layer >= 0 && layer < static_cast<int>(m_rowOfLayer.size()) ? m_rowOfLayer[static_cast<std::size_t>(layer)] : -1;
}

bool LayerTableModel::setData(const QModelIndex &index, const QVariant &value, int role)
{
    const int layer = index.isValid() ? layerOfRow(index.row()) : -1;
    if (layer < 0 || index.column() != SettingColumn || role != Qt::EditRole)
        return false;
    // The assignment model parses and pushes the undo command; one code path for both tables.
    return m_doc->layerModel()->setData(m_doc->layerModel()->index(layer, AssignmentTableModel::SettingColumn), value, role);
}

Qt::ItemFlags LayerTableModel::flags(const QModelIndex &index) const
{
    Qt::ItemFlags f = QAbstractTableModel::flags(index);
    if (index.isValid() && index.column() == SettingColumn && layerOfRow(index.row()) >= 0)
        f |= Qt::ItemIsEditable;
    return f;
}

const core::WeightInfo *LayerTableModel::weightAt(int row) const
{
    if (!m_model || row < 0 || row >= rowCount())
        return nullptr;
    return &m_model->weights()[static_cast<std::size_t>(row)];
}

int LayerTableModel::rowCount(const QModelIndex &parent) const
{
    if (parent.isValid() || !m_model)
        return 0;
    return static_cast<int>(m_model->weights().size());
}

int LayerTableModel::columnCount(const QModelIndex &parent) const
{
    return parent.isValid() ? 0 : ColumnCount;
}

QVariant LayerTableModel::data(const QModelIndex &index, int role) const
{
    const core::WeightInfo *w = index.isValid() ? weightAt(index.row()) : nullptr;
    if (!w)
        return {};
    const int column = index.column();
    if (column >= SettingColumn) {
        const int layer = layerOfRow(index.row());
        const bool hasSetting = layer >= 0;
        const core::LayerSetting setting = hasSetting ? m_doc->setting(layer) : core::LayerSetting{};
        const double bytes = hasSetting ? m_doc->layerBytes(layer, setting) : static_cast<double>(w->storedBytes);
        const double bpw = w->parameters > 0 ? 8.0 * bytes / static_cast<double>(w->parameters) : 0.0;
        switch (role) {
        case Qt::DisplayRole:
        case Qt::EditRole:
            if (column == SettingColumn)
                return hasSetting ? setting.label() : QStringLiteral("–");
            if (column == EffectiveBitsColumn)
                return QString::number(bpw, 'f', 3);
            return formatBytes(static_cast<std::int64_t>(std::llround(bytes)));
        case SortRole:
            if (column == SettingColumn)
                return hasSetting ? setting.label() : QString();
            return column == EffectiveBitsColumn ? bpw : bytes;
        case FilterRole:
            return w->name + QLatin1Char(' ') + QLatin1String(core::weightRoleName(w->role));
        case ChoicesRole:
            return m_doc ? m_doc->layerModel()->choices() : QStringList();
        case Qt::ToolTipRole:
            return hasSetting ? tr("Setting of the current recipe (double-click to change; undoable)")
                              : tr("Not a compressible layer: kept as stored");
        case Qt::TextAlignmentRole:
            return QVariant::fromValue(column == SettingColumn ? Qt::AlignLeft | Qt::AlignVCenter
                                                               : Qt::AlignRight | Qt::AlignVCenter);
        default:
            return {};
        }
    }
    switch (role) {
    case Qt::DisplayRole:
        return displayValue(*w, column);
    case SortRole:
        return sortValue(*w, column);
    case FilterRole:
        return w->name + QLatin1Char(' ') + QLatin1String(core::weightRoleName(w->role));
    case Qt::ToolTipRole:
        return toolTip(*w);
    case Qt::TextAlignmentRole:
        if (column == NameColumn || column == KindColumn || column == DTypeColumn)
            return QVariant::fromValue(Qt::AlignLeft | Qt::AlignVCenter);
        return QVariant::fromValue(Qt::AlignRight | Qt::AlignVCenter);
    default:
        return {};
    }
}

QVariant LayerTableModel::displayValue(const core::WeightInfo &w, int column) const
{
    switch (column) {
    case NameColumn: return w.name;
    case BlockColumn: return w.block >= 0 ? QString::number(w.block) : QStringLiteral("–");
    case KindColumn: return QLatin1String(core::weightRoleName(w.role));
    case ShapeColumn: return formatShape(w.shape);
    case ParametersColumn: return formatCount(w.parameters);
    case DTypeColumn: return w.format; // "BF16", or a quantized format such as "q4 g128"
    case BytesColumn: return formatBytes(w.storedBytes);
    case ShareColumn:
        return m_totalParameters > 0
                   ? QString::number(100.0 * static_cast<double>(w.parameters)
                                         / static_cast<double>(m_totalParameters), 'f', 2)
                         + QStringLiteral(" %")
                   : QString();
    default: return {};
    }
}

QVariant LayerTableModel::sortValue(const core::WeightInfo &w, int column) const
{
    switch (column) {
    case NameColumn: return naturalSortKey(w.name);
    case BlockColumn: {
        // Tensors outside the blocks sort where they sit in the network: the embedding before
        // block 0, the final norm and the head after the last block.
        if (w.block >= 0)
            return w.block;
        return w.role == core::WeightRole::Embedding ? -1 : m_model->config().numLayers;
    }
    case KindColumn: return QLatin1String(core::weightRoleName(w.role));
    case ShapeColumn: // by element count: "4096 × 64" is larger than "64 × 512"
        return QVariant::fromValue(static_cast<qlonglong>(w.parameters));
    case ParametersColumn: return QVariant::fromValue(static_cast<qlonglong>(w.parameters));
    case DTypeColumn: return w.format;
    case BytesColumn: return QVariant::fromValue(static_cast<qlonglong>(w.storedBytes));
    case ShareColumn: return QVariant::fromValue(static_cast<qlonglong>(w.parameters));
    default: return {};
    }
}

QString LayerTableModel::toolTip(const core::WeightInfo &w) const
{
    const QString where = w.block >= 0 ? QStringLiteral("block %1").arg(w.block)
                                       : QStringLiteral("outside the transformer blocks");
    QString tip = QStringLiteral("<b>%1</b><br>%2, %3<br>shape %4: %5 parameters<br>"
                                 "stored as %6 (%9 bits per weight): %7 bytes (%8)")
                      .arg(w.name.toHtmlEscaped(), roleDescription(w.role), where,
                           formatShape(w.shape), formatCount(w.parameters), w.format,
                           formatCount(w.storedBytes), formatBytes(w.storedBytes))
                      .arg(w.bitsPerWeight, 0, 'f', 3);
    if (core::isLinearRole(w.role))
        tip += QStringLiteral("<br><i>a linear weight: a candidate for compression</i>");
    return tip;
}

QVariant LayerTableModel::headerData(int section, Qt::Orientation orientation, int role) const
{
    if (orientation != Qt::Horizontal)
        return {};
    if (role == Qt::DisplayRole) {
        switch (section) {
        case NameColumn: return tr("Name");
        case BlockColumn: return tr("Block");
        case KindColumn: return tr("Kind");
        case ShapeColumn: return tr("Shape");
        case ParametersColumn: return tr("Parameters");
        case DTypeColumn: return tr("Format");
        case BytesColumn: return tr("Bytes");
        case ShareColumn: return tr("% of model");
        case SettingColumn: return tr("Setting");
        case EffectiveBitsColumn: return tr("Eff. bits");
        case SizeColumn: return tr("Size");
        default: return {};
        }
    }
    if (role == Qt::ToolTipRole) {
        switch (section) {
        case NameColumn: return tr("Tensor name in the checkpoint");
        case BlockColumn: return tr("Transformer block index (– for embedding, final norm, head)");
        case KindColumn: return tr("What the tensor is for");
        case ShapeColumn: return tr("Rows × columns as stored (out_features × in_features)");
        case ParametersColumn: return tr("Number of elements");
        case DTypeColumn: return tr("Element type, or the quantization format (bits, group size) of a compressed layer");
        case BytesColumn: return tr("Bytes in the safetensors file");
        case ShareColumn: return tr("Share of the model's parameters");
        case SettingColumn: return tr("The current recipe's setting for this layer (technique:wBITS[gGROUP], or dense)");
        case EffectiveBitsColumn: return tr("Effective bits per weight under the current recipe (scales and zeros counted)");
        case SizeColumn: return tr("Size under the current recipe");
        default: return {};
        }
    }
    if (role == Qt::TextAlignmentRole)
        return QVariant::fromValue(section == NameColumn || section == KindColumn
                                           || section == DTypeColumn || section == SettingColumn
                                       ? Qt::AlignLeft | Qt::AlignVCenter
                                       : Qt::AlignRight | Qt::AlignVCenter);
    return {};
}

} // namespace bitsmith::ui

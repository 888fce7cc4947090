// projectdocument.cpp: recipe edits as undo commands, cached per-layer settings and totals,
// sensitivity lookups, allocation, and the shared layer selection.
#include "projectdocument.h"

#include "assignmenttablemodel.h"

#include <QHash>
#include <QItemSelectionModel>
#include <QUndoCommand>
#include <QUndoStack>

#include <algorithm>
#include <cmath>
#include <limits>

namespace bitsmith::ui {

QString metricName(SensitivityMetric m)
{
    switch (m) {
    case SensitivityMetric::DeltaLoss: return QObject::tr("Δloss");
    case SensitivityMetric::Kl: return QObject::tr("KL");
    case SensitivityMetric::Perplexity: return QObject::tr("Perplexity");
    case SensitivityMetric::RelativeError: return QObject::tr("Relative error");
    case SensitivityMetric::HessianError: return QObject::tr("Hessian-weighted");
    case SensitivityMetric::ActivationError: return QObject::tr("imatrix");
    case SensitivityMetric::Hutchinson: return QObject::tr("Hutchinson trace");
    }
    return {};
}

QString metricDescription(SensitivityMetric m)
{
    switch (m) {
    case SensitivityMetric::DeltaLoss:
        return QObject::tr("Δloss: increase of the mean next-token loss (nats) on the evaluation text when only "
                           "this layer is compressed with this setting. Can be slightly negative (noise).");
    case SensitivityMetric::Kl:
        return QObject::tr("KL: mean KL divergence (nats) of the compressed model's next-token distribution from "
                           "the original's, only this layer compressed. Always ≥ 0; the allocator sums it.");
    case SensitivityMetric::Perplexity:
        return QObject::tr("Perplexity of the evaluation text with only this layer compressed (the original's is "
                           "the floor).");
    case SensitivityMetric::RelativeError:
        return QObject::tr("Relative weight error ‖ΔW‖²/‖W‖²: a proxy needing no evaluation; ignores which "
                           "inputs matter.");
    case SensitivityMetric::HessianError:
        return QObject::tr("Hessian-weighted error Σ diag(H)·ΔW²: weight error weighted by the calibration "
                           "inputs' energy per input channel (H = 2/n Σ x xᵀ), GPTQ's objective.");
    case SensitivityMetric::ActivationError:
        return QObject::tr("Activation-weighted error (llama.cpp's imatrix): Σ_j mean(x_j²) Σ_i ΔW_ij².");
    case SensitivityMetric::Hutchinson:
        return QObject::tr("Hutchinson estimate of the trace of the loss Hessian for this layer's weights "
                           "(HAWQ): larger means more curvature, more sensitive.");
    }
    return {};
}

namespace {

// One recipe change. Single-layer edits carry the layer in their id so that repeated edits of
// the same layer (e.g. scrolling a combo) merge into one undo step.
class RecipeCommand : public QUndoCommand
{
public:
    RecipeCommand(ProjectDocument *doc, core::Recipe before, core::Recipe after, const QString &text, int layer = -1)
        : QUndoCommand(text), m_doc(doc), m_before(std::move(before)), m_after(std::move(after)), m_layer(layer)
    {}
    void undo() override { m_doc->applyRecipe(m_before); }
    void redo() override { m_doc->applyRecipe(m_after); }
    int id() const override { return m_layer >= 0 ? 0x5e7 : -1; }
    bool mergeWith(const QUndoCommand *other) override
    {
        const auto *o = static_cast<const RecipeCommand *>(other);
        if (o->m_layer != m_layer)
            return false;
        m_after = o->m_after;
        setText(o->text());
        return true;
    }

private:
    ProjectDocument *m_doc;
    core::Recipe m_before, m_after;
    int m_layer;
};

} // namespace

ProjectDocument::ProjectDocument(QObject *parent)
    : QObject(parent)
    , m_undo(new QUndoStack(this))
{
    m_layerModel = new AssignmentTableModel(this, this);
    m_selection = new QItemSelectionModel(m_layerModel, this);
    connect(m_selection, &QItemSelectionModel::currentRowChanged, this,
            [this](const QModelIndex &current) { emit currentLayerChanged(current.isValid() ? current.row() : -1); });
    connect(m_selection, &QItemSelectionModel::selectionChanged, this, &ProjectDocument::selectionChanged);
    connect(m_undo, &QUndoStack::cleanChanged, this, [this] { emit modifiedChanged(isModified()); });
}

ProjectDocument::~ProjectDocument() = default;

void ProjectDocument::setModel(std::shared_ptr<const core::Model> model, const QString &reference,
                               std::optional<core::Recipe> recipe)
{
    m_model = std::move(model);
    m_modelReference = reference;
    m_layers.clear();
    m_denseBytes.clear();
    m_layerIndex.clear();
    if (m_model) {
        QHash<QString, double> stored;
        for (const core::WeightInfo &w : m_model->weights())
            stored.insert(w.name, static_cast<double>(w.storedBytes));
        for (core::AssignableLayer &l : core::assignableLayers(*m_model)) {
            if (l.isHead)
                continue; // the head stays dense unless a recipe names it; not edited here
            m_denseBytes.push_back(stored.value(l.name + QStringLiteral(".weight"), 0.0));
            m_layerIndex.insert(l.name, static_cast<int>(m_layers.size()));
            m_layers.push_back(std::move(l));
        }
    }
    m_recipe = recipe ? *recipe : core::Recipe{};
    if (m_model && !recipe) {
        m_recipe.modelArchitecture = m_model->config().architectureName;
    }
    m_undo->clear();
    // A new model starts a new project (restoreProject() brings a project's results back);
    // checking whether old results still fit would hash every weight on the UI thread.
    m_sensitivity.reset();
    m_saved.clear();
    m_measured.clear();
    m_frontier.clear();
    m_extraModified = false;
    m_layerModel->beginReset();
    recompute();
    m_layerModel->endReset();
    emit modelChanged();
    emit sensitivityChanged();
    emit recipeChanged();
    emit savedChanged();
    emit measuredChanged();
    emit frontierChanged();
}

int ProjectDocument::layerIndex(const QString &name) const
{
    if (name.endsWith(QLatin1String(".weight")))
        return m_layerIndex.value(name.left(name.size() - 7), -1);
    return m_layerIndex.value(name, -1);
}

void ProjectDocument::setLayerSetting(int layer, const core::LayerSetting &setting)
{
    if (layer < 0 || layer >= layerCount() || m_settings[static_cast<std::size_t>(layer)] == setting)
        return;
    const QString &name = m_layers[static_cast<std::size_t>(layer)].name;
    m_undo->push(new RecipeCommand(this, m_recipe, core::withLayerSetting(m_recipe, name, setting),
                                   tr("Set %1 to %2").arg(name, setting.label()), layer));
}

void ProjectDocument::setLayerSettings(const std::vector<int> &layers, const core::LayerSetting &setting)
{
    if (layers.size() == 1)
        return setLayerSetting(layers.front(), setting);
    core::Recipe after = m_recipe;
    int changed = 0;
    for (int l : layers)
        if (l >= 0 && l < layerCount() && !(m_settings[static_cast<std::size_t>(l)] == setting)) {
            after = core::withLayerSetting(after, m_layers[static_cast<std::size_t>(l)].name, setting);
            ++changed;
        }
    if (changed > 0)
        m_undo->push(new RecipeCommand(this, m_recipe, std::move(after),
                                       tr("Set %1 layers to %2").arg(changed).arg(setting.label())));
}

void ProjectDocument::loadRecipe(const core::Recipe &recipe, const QString &description)
{
    m_undo->push(new RecipeCommand(this, m_recipe, recipe, description));
}

void ProjectDocument::applyRecipe(const core::Recipe &recipe)
{
    m_recipe = recipe;
    recompute();
    m_layerModel->settingsChanged();
    emit recipeChanged();
}

void ProjectDocument::recompute()
{
    m_settings = core::resolveAssignment(m_recipe, m_layers);
    m_sensitivityRow.assign(m_layers.size(), -1);
    if (m_sensitivity) {
        QHash<QString, int> rows;
        for (std::size_t r = 0; r < m_sensitivity->layers.size(); ++r)
            rows.insert(m_sensitivity->layers[r], static_cast<int>(r));
        for (std::size_t i = 0; i < m_layers.size(); ++i)
            m_sensitivityRow[i] = rows.value(m_layers[i].name, -1);
    }
    m_totals = totalsFor(m_settings);
}

ProjectDocument::Totals ProjectDocument::totalsFor(const std::vector<core::LayerSetting> &settings) const
{
    Totals t;
    for (std::size_t i = 0; i < m_layers.size() && i < settings.size(); ++i) {
        const int l = static_cast<int>(i);
        t.bytes += layerBytes(l, settings[i]);
        t.originalBytes += m_denseBytes[i];
        t.parameters += static_cast<double>(m_layers[i].parameters());
        const double c = predictedCost(l, settings[i]);
        if (std::isnan(c))
            ++t.unknownLayers;
        else
            t.predicted += c;
    }
    if (t.parameters > 0) {
        t.bitsPerWeight = 8.0 * t.bytes / t.parameters;
        t.originalBitsPerWeight = 8.0 * t.originalBytes / t.parameters;
    }
    return t;
}

void ProjectDocument::setSensitivity(std::optional<core::SensitivityResult> result)
{
    m_sensitivity = std::move(result);
    m_frontier.clear();
    m_extraModified = true;
    recompute();
    m_layerModel->settingsChanged();
    emit sensitivityChanged();
    emit recipeChanged(); // predicted figures changed
    emit frontierChanged();
    emit modifiedChanged(isModified());
}

int ProjectDocument::sensitivityRow(int layer) const
{
    return layer >= 0 && layer < static_cast<int>(m_sensitivityRow.size()) ? m_sensitivityRow[static_cast<std::size_t>(layer)] : -1;
}

int ProjectDocument::sensitivityColumn(const core::LayerSetting &setting) const
{
    if (!m_sensitivity || setting.dense)
        return -1;
    for (std::size_t s = 0; s < m_sensitivity->settings.size(); ++s)
        if (core::LayerSetting::fromSensitivity(m_sensitivity->settings[s]) == setting)
            return static_cast<int>(s);
    return -1;
}

namespace {

// The lead may add a Hutchinson trace matrix to SensitivityResult; use it when it is there.
template<typename R>
const std::vector<double> *hutchinsonOf(const R &r)
{
    if constexpr (requires { r.hutchinson; })
        return &r.hutchinson;
    else if constexpr (requires { r.hutchinsonTrace; })
        return &r.hutchinsonTrace;
    else
        return nullptr;
}

} // namespace

double ProjectDocument::sensitivityValue(SensitivityMetric m, int row, int column) const
{
    constexpr double nan = std::numeric_limits<double>::quiet_NaN();
    if (!m_sensitivity || row < 0 || column < 0 || row >= static_cast<int>(m_sensitivity->layers.size())
        || column >= static_cast<int>(m_sensitivity->settings.size()))
        return nan;
    const core::SensitivityResult &r = *m_sensitivity;
    const std::vector<double> *v = nullptr;
    switch (m) {
    case SensitivityMetric::DeltaLoss: v = &r.deltaLoss; break;
    case SensitivityMetric::Kl: v = &r.kl; break;
    case SensitivityMetric::Perplexity: v = &r.perplexity; break;
    case SensitivityMetric::RelativeError: v = &r.relativeError; break;
    case SensitivityMetric::HessianError: v = &r.hessianError; break;
    case SensitivityMetric::ActivationError: v = &r.activationError; break;
    case SensitivityMetric::Hutchinson: v = hutchinsonOf(r); break;
    }
    const std::size_t i = static_cast<std::size_t>(row) * r.settings.size() + static_cast<std::size_t>(column);
    if (!v)
        return nan;
    if (v->size() == r.layers.size() && m == SensitivityMetric::Hutchinson)
        return (*v)[static_cast<std::size_t>(row)]; // one trace per layer
    return i < v->size() ? (*v)[i] : nan;
}

void ProjectDocument::setCostMetric(SensitivityMetric m)
{
    if (m == m_costMetric)
        return;
    m_costMetric = m;
    recompute();
    m_frontier.clear();
    m_layerModel->settingsChanged();
    emit recipeChanged();
    emit frontierChanged();
}

double ProjectDocument::predictedCost(int layer, const core::LayerSetting &setting) const
{
    if (setting.dense)
        return 0.0;
    return sensitivityValue(m_costMetric, sensitivityRow(layer), sensitivityColumn(setting));
}

double ProjectDocument::layerBytes(int layer, const core::LayerSetting &setting) const
{
    const std::size_t i = static_cast<std::size_t>(layer);
    const int row = sensitivityRow(layer), col = sensitivityColumn(setting);
    if (row >= 0 && col >= 0)
        return m_sensitivity->at(m_sensitivity->bytes, static_cast<std::size_t>(row), static_cast<std::size_t>(col));
    return core::layerBytes(m_layers[i], setting, m_denseBytes[i]);
}

std::vector<core::AllocationLayer> ProjectDocument::allocationProblem() const
{
    std::vector<core::AllocationLayer> out;
    if (!m_sensitivity)
        return out;
    const core::SensitivityResult &r = *m_sensitivity;
    for (std::size_t l = 0; l < r.layers.size(); ++l) {
        core::AllocationLayer a{r.layers[l], r.parameters[l], {}};
        for (std::size_t s = 0; s < r.settings.size(); ++s) {
            double cost = sensitivityValue(m_costMetric, static_cast<int>(l), static_cast<int>(s));
            if (!std::isfinite(cost))
                cost = 1e9; // never chosen when anything else fits
            a.options.push_back({r.settings[s].label(), r.at(r.bytes, l, s), cost});
        }
        out.push_back(std::move(a));
    }
    return out;
}

double ProjectDocument::bytesForBitsPerWeight(double bpw) const
{
    return core::bytesForBitsPerWeight(allocationProblem(), bpw);
}

std::vector<core::LayerSetting> ProjectDocument::settingsForChoice(const std::vector<int> &choice) const
{
    std::vector<core::LayerSetting> out = m_settings;
    if (!m_sensitivity)
        return out;
    for (std::size_t i = 0; i < m_layers.size(); ++i) {
        const int row = m_sensitivityRow[i];
        if (row >= 0 && row < static_cast<int>(choice.size()))
            out[i] = core::LayerSetting::fromSensitivity(m_sensitivity->settings[static_cast<std::size_t>(choice[static_cast<std::size_t>(row)])]);
    }
    return out;
}

core::Expected<std::vector<int>> ProjectDocument::fillToBudget(double maxBytes)
{
    if (!m_sensitivity)
        return core::unexpected(core::fail(core::ErrorCode::InvalidArgument, tr("no sensitivity results yet"))
                                    .withHint(tr("run the sensitivity analysis first (Analysis → Run Sensitivity)")));
    auto result = core::allocateExact(allocationProblem(), maxBytes);
    if (!result)
        return core::unexpected(result.error());
    const std::vector<core::LayerSetting> next = settingsForChoice(result->choice);
    std::vector<int> changed;
    for (std::size_t i = 0; i < next.size(); ++i)
        if (!(next[i] == m_settings[i]))
            changed.push_back(static_cast<int>(i));
    core::Recipe after = core::recipeFromAssignment(m_recipe, m_layers, next);
    if (!changed.empty())
        m_undo->push(new RecipeCommand(this, m_recipe, std::move(after),
                                       tr("Fill to budget (%1 bpw, %2 layers changed)")
                                           .arg(result->bitsPerWeight, 0, 'f', 3)
                                           .arg(changed.size())));
    return changed;
}

void ProjectDocument::setFrontier(std::vector<core::FrontierPoint> frontier)
{
    m_frontier = std::move(frontier);
    emit frontierChanged();
}

void ProjectDocument::saveConfiguration(const QString &name)
{
    m_saved.push_back({name, m_recipe, m_totals.bytes, m_totals.bitsPerWeight, m_totals.predicted,
                       QDateTime::currentDateTimeUtc()});
    markModified();
    emit savedChanged();
}

void ProjectDocument::removeConfiguration(int index)
{
    if (index < 0 || index >= static_cast<int>(m_saved.size()))
        return;
    m_saved.erase(m_saved.begin() + index);
    markModified();
    emit savedChanged();
}

void ProjectDocument::addMeasuredPoint(core::MeasuredPoint point)
{
    m_measured.push_back(std::move(point));
    markModified();
    emit measuredChanged();
}

int ProjectDocument::currentLayer() const
{
    const QModelIndex c = m_selection->currentIndex();
    return c.isValid() ? c.row() : -1;
}

std::vector<int> ProjectDocument::selectedLayers() const
{
    std::vector<int> out;
    for (const QModelIndex &i : m_selection->selectedRows())
        out.push_back(i.row());
    std::sort(out.begin(), out.end());
    if (out.empty() && currentLayer() >= 0)
        out.push_back(currentLayer());
    return out;
}

void ProjectDocument::selectLayer(int layer)
{
    selectLayers({layer}, layer);
}

void ProjectDocument::selectLayers(const std::vector<int> &layers, int current)
{
    QItemSelection sel;
    for (int l : layers)
        if (l >= 0 && l < layerCount())
            sel.select(m_layerModel->index(l, 0), m_layerModel->index(l, m_layerModel->columnCount() - 1));
    if (sel == m_selection->selection() && current == currentLayer())
        return;
    m_selection->select(sel, QItemSelectionModel::ClearAndSelect);
    if (current >= 0 && current < layerCount())
        m_selection->setCurrentIndex(m_layerModel->index(current, 0), QItemSelectionModel::NoUpdate);
}

core::Project ProjectDocument::toProject() const
{
    core::Project p;
    p.modelReference = m_modelReference;
    p.recipe = m_recipe;
    p.saved = m_saved;
    p.sensitivity = m_sensitivity;
    p.measured = m_measured;
    return p;
}

void ProjectDocument::restoreProject(const core::Project &project)
{
    m_recipe = project.recipe;
    m_sensitivity = project.sensitivity;
    m_saved = project.saved;
    m_measured = project.measured;
    m_frontier.clear();
    m_undo->clear();
    m_layerModel->beginReset();
    recompute();
    m_layerModel->endReset();
    m_extraModified = false;
    emit sensitivityChanged();
    emit recipeChanged();
    emit savedChanged();
    emit measuredChanged();
    emit frontierChanged();
    emit modifiedChanged(false);
}

void ProjectDocument::setFileName(const QString &f)
{
    if (f == m_fileName)
        return;
    m_fileName = f;
    emit fileNameChanged(f);
}

bool ProjectDocument::isModified() const
{
    return m_extraModified || !m_undo->isClean();
}

void ProjectDocument::setClean()
{
    m_extraModified = false;
    m_undo->setClean();
    emit modifiedChanged(false);
}

void ProjectDocument::markModified()
{
    m_extraModified = true;
    emit modifiedChanged(true);
}

} // namespace bitsmith::ui

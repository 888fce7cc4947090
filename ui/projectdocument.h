// projectdocument.h: the open project as the views see it: the model, the current recipe (the
// single source of truth, core/recipe.h) with its QUndoStack, the per-layer settings it resolves
// to, the sensitivity results, the predicted frontier, measured points and saved configurations,
// and the layer selection shared by every view (a QItemSelectionModel over the assignment table
// model: selecting a layer anywhere selects it everywhere).
//
// Editing rule (as in Tiled): nothing changes the recipe except an undo command pushed here;
// table models call setLayerSetting() from setData(). Repeated edits of one layer merge.
#pragma once

#include "core/allocation.h"
#include "core/layerassignment.h"
#include "core/model.h"
#include "core/project.h"
#include "core/sensitivity.h"

#include <QHash>
#include <QObject>
#include <QString>

#include <memory>
#include <optional>
#include <vector>

class QItemSelectionModel;
class QUndoStack;

namespace bitsmith::ui {

class AssignmentTableModel;

// What a sensitivity figure measures; Perplexity and the proxies are for display only.
enum class SensitivityMetric { DeltaLoss, Kl, Perplexity, RelativeError, HessianError, ActivationError, Hutchinson };
QString metricName(SensitivityMetric m);
// A sentence for tooltips: what the metric is and how to read it.
QString metricDescription(SensitivityMetric m);

class ProjectDocument : public QObject
{
    Q_OBJECT

public:
    explicit ProjectDocument(QObject *parent = nullptr);
    ~ProjectDocument() override;

    // ---- model ----
    // Sets the model (null clears); `reference` is what a project stores to reopen it ("default"
    // or a folder). Resets recipe (to `recipe` if given), undo history, selection and results.
    void setModel(std::shared_ptr<const core::Model> model, const QString &reference,
                  std::optional<core::Recipe> recipe = std::nullopt);
    const std::shared_ptr<const core::Model> &model() const { return m_model; }
    QString modelReference() const { return m_modelReference; }
    // The compressible layers (the linears of the blocks), in execution order.
    const std::vector<core::AssignableLayer> &layers() const { return m_layers; }
    int layerCount() const { return static_cast<int>(m_layers.size()); }
    // Layer index by name (with or without ".weight"); -1 if not a compressible layer.
    int layerIndex(const QString &name) const;
    double denseBytes(int layer) const { return m_denseBytes[static_cast<std::size_t>(layer)]; }

    // ---- recipe ----
    const core::Recipe &recipe() const { return m_recipe; }
    const std::vector<core::LayerSetting> &settings() const { return m_settings; }
    const core::LayerSetting &setting(int layer) const { return m_settings[static_cast<std::size_t>(layer)]; }
    QUndoStack *undoStack() const { return m_undo; }
    // Undoable edits.
    void setLayerSetting(int layer, const core::LayerSetting &setting);
    void setLayerSettings(const std::vector<int> &layers, const core::LayerSetting &setting);
    void loadRecipe(const core::Recipe &recipe, const QString &description);
    // Used by the undo commands only: replaces the recipe and notifies the views.
    void applyRecipe(const core::Recipe &recipe);

    // ---- sensitivity, prediction, allocation ----
    void setSensitivity(std::optional<core::SensitivityResult> result);
    const std::optional<core::SensitivityResult> &sensitivity() const { return m_sensitivity; }
    // Row of the sensitivity result for layer `layer`, -1 if it has none.
    int sensitivityRow(int layer) const;
    // Column of the result matching `setting`, -1 if none (dense or not a candidate).
    int sensitivityColumn(const core::LayerSetting &setting) const;
    // A figure of the result (NaN when unavailable); Hutchinson only when the result has it.
    double sensitivityValue(SensitivityMetric m, int row, int column) const;
    // The cost the allocator and the curve marker sum (KL by default).
    SensitivityMetric costMetric() const { return m_costMetric; }
    void setCostMetric(SensitivityMetric m);
    // Predicted cost of `layer` under `setting`: 0 dense, NaN when the setting was not measured.
    double predictedCost(int layer, const core::LayerSetting &setting) const;
    double layerBytes(int layer, const core::LayerSetting &setting) const;

    struct Totals
    {
        double bytes = 0;          // compressible layers under the recipe
        double originalBytes = 0;  // the same layers as stored
        double parameters = 0;
        double bitsPerWeight = 0;  // 8 · bytes / parameters
        double originalBitsPerWeight = 0;
        double predicted = 0;      // Σ predictedCost (layers with a known cost)
        int unknownLayers = 0;     // layers whose setting was not measured
    };
    const Totals &totals() const { return m_totals; }
    Totals totalsFor(const std::vector<core::LayerSetting> &settings) const;

    // The allocation problem over the layers that have sensitivity rows (every candidate).
    std::vector<core::AllocationLayer> allocationProblem() const;
    // Runs the exact allocator for a byte budget over the compressible layers and pushes the
    // result as one undoable command. Returns the layers whose setting changed.
    core::Expected<std::vector<int>> fillToBudget(double maxBytes);
    // The byte budget for a target effective bits per weight.
    double bytesForBitsPerWeight(double bpw) const;
    // Settings of a choice of the allocation problem (one index per sensitivity row).
    std::vector<core::LayerSetting> settingsForChoice(const std::vector<int> &choice) const;

    // Predicted frontier (computed with the sensitivity; empty without) and uniform baselines.
    const std::vector<core::FrontierPoint> &frontier() const { return m_frontier; }
    void setFrontier(std::vector<core::FrontierPoint> frontier);

    // ---- saved configurations and measured points ----
    const std::vector<core::SavedConfiguration> &savedConfigurations() const { return m_saved; }
    void saveConfiguration(const QString &name);
    void removeConfiguration(int index);
    const std::vector<core::MeasuredPoint> &measuredPoints() const { return m_measured; }
    void addMeasuredPoint(core::MeasuredPoint point);

    // ---- selection (shared by all views) ----
    AssignmentTableModel *layerModel() const { return m_layerModel; }
    QItemSelectionModel *selectionModel() const { return m_selection; }
    int currentLayer() const;
    std::vector<int> selectedLayers() const;
    void selectLayer(int layer);                          // makes it current and the only one
    void selectLayers(const std::vector<int> &layers, int current);

    // ---- file ----
    core::Project toProject() const;
    // After setModel(): the project's recipe, sensitivity, saved configurations and measured
    // points; the undo history starts empty and the document is clean.
    void restoreProject(const core::Project &project);
    QString fileName() const { return m_fileName; }
    void setFileName(const QString &f);
    bool isModified() const;
    void setClean();
    void markModified();

signals:
    void modelChanged();
    void recipeChanged();
    void sensitivityChanged();
    void frontierChanged();
    void savedChanged();
    void measuredChanged();
    void currentLayerChanged(int layer);
    void selectionChanged();
    void modifiedChanged(bool modified);
    void fileNameChanged(const QString &fileName);

private:
    void recompute();

    std::shared_ptr<const core::Model> m_model;
    QString m_modelReference;
    std::vector<core::AssignableLayer> m_layers;
    std::vector<double> m_denseBytes;
    QHash<QString, int> m_layerIndex; // by name without ".weight"
    core::Recipe m_recipe;
    std::vector<core::LayerSetting> m_settings;
    QUndoStack *m_undo = nullptr;
    std::optional<core::SensitivityResult> m_sensitivity;
    std::vector<int> m_sensitivityRow; // per layer
    SensitivityMetric m_costMetric = SensitivityMetric::Kl;
    Totals m_totals;
    std::vector<core::FrontierPoint> m_frontier;
    std::vector<core::SavedConfiguration> m_saved;
    std::vector<core::MeasuredPoint> m_measured;
    AssignmentTableModel *m_layerModel = nullptr;
    QItemSelectionModel *m_selection = nullptr;
    QString m_fileName;
    bool m_extraModified = false; // changes outside the undo stack (saved configs, results)
};

} // namespace bitsmith::ui

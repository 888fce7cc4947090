// workbenchtasks.h: the long computations behind the workbench's jobs, as plain functions over
// core (they run on worker threads, touch no widget and no document): the sensitivity sweep,
// measuring recipes for real (compress + compare with the original), and "Try it" (compress,
// then generate from both models). The CLI commands do the same through the same core calls.
#pragma once

#include "core/error.h"
#include "core/feedback.h"
#include "core/model.h"
#include "core/project.h"
#include "core/sensitivity.h"

#include <QString>

#include <functional>

#include <memory>
#include <vector>

namespace bitsmith::ui {

struct SweepSpec
{
    QString evalText;   // "" = the model folder's eval.txt
    QString calibText;  // "" = the model folder's calib.txt (if any)
    QString candidates = QStringLiteral("rtn:w2g64,rtn:w3g64,rtn:w4g128,rtn:w8");
    core::SensitivityOptions options;
    // Small and quick (a few seconds on the bundled model): what the GUI runs by default.
    static SweepSpec quick();
};

core::Expected<core::SensitivityResult> runSweep(std::shared_ptr<const core::Model> model, const SweepSpec &spec,
                                                 core::Feedback &feedback);

struct MeasureRequest
{
    QString kind;
    QString label;
    core::Recipe recipe;
    double bytes = 0;
    double bitsPerWeight = 0;
    double predicted = 0;
};

// Compresses the model with each recipe and compares it with the original on `windows` windows
// of `ctx` tokens of the evaluation text (the model folder's eval.txt when `evalText` is empty).
// `onPoint` (optional) is called on the worker thread as each point is measured.
core::Expected<std::vector<core::MeasuredPoint>> measureRecipes(
    std::shared_ptr<const core::Model> model, const std::vector<MeasureRequest> &requests, const QString &evalText,
    int ctx, int windows, core::Feedback &feedback,
    const std::function<void(const core::MeasuredPoint &)> &onPoint = {});

struct TryItResult
{
    QString original;     // generated continuation of the prompt, original model
    QString compressed;   // the same with the compressed model
    double originalPerplexity = 0;
    double compressedPerplexity = 0;
    double kl = 0;
    double bitsPerWeight = 0; // of the compressed layers
    double seconds = 0;
};

// Compresses with `recipe`, then generates `maxTokens` greedily from both models for `prompt`
// and measures perplexity and KL on a few windows of the evaluation text.
core::Expected<TryItResult> tryRecipe(std::shared_ptr<const core::Model> model, const core::Recipe &recipe,
                                      const QString &prompt, int maxTokens, core::Feedback &feedback);

} // namespace bitsmith::ui

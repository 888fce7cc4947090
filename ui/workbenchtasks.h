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

// ---- distillation (issue 8) ----
#include "core/train/distill.h" // DistillOptions, DistillProgress

namespace bitsmith::ui {

struct DistillSpec
{
    // "recipe": the current recipe's compressed model (trained quantization-aware on its frozen
    // grids, zeros kept); otherwise an architecture change of the teacher (core/train/trainmodel.h),
    // e.g. "layers:every-other" or "mlp:0.5".
    QString student = QStringLiteral("recipe");
    core::Recipe recipe;          // used when student == "recipe"
    core::train::DistillOptions options;
    QString trainText;            // "" = the model folder's calib.txt
    QString evalText;             // "" = the model folder's eval.txt (validation and the final measurement)
    int measureWindows = 4;       // windows of min(128, max positions) tokens for the final KL / perplexity
    // The frontier's x axis is bits per weight of the teacher's compressible layers; for an
    // architecture student stored in the teacher's format, its blocks' linear parameters × this.
    double denseBytesPerParameter = 2.0;
    double teacherParameters = 0; // compressible parameters of the teacher (the document's totals)
    double recipeBytes = 0, recipeBitsPerWeight = 0, recipePredicted = 0; // the recipe's totals
};

struct DistillOutcome
{
    core::MeasuredPoint point;      // kind "distilled": size and measured KL / perplexity
    double teacherPerplexity = 0;   // validation perplexity (ctx of the run) of the teacher
    double perplexityBefore = 0;    // the student's before training
    double perplexityAfter = 0;     // and after
    double compressedBitsPerWeight = 0;
    int steps = 0;
};

// Builds the student (compressing with the recipe when asked), distils it from `teacher` with
// core::train::Distiller, writes it to a temporary folder with saveStudent / saveDenseStudent,
// reloads it and measures it against the teacher (KL and perplexity on the evaluation text).
// `onProgress` runs on the worker thread after each step (the Distiller's per-step callback;
// it may block, e.g. to pause). Cancellation through `feedback` returns ErrorCode::Cancelled.
core::Expected<DistillOutcome> runDistillation(std::shared_ptr<const core::Model> teacher, const DistillSpec &spec,
                                               core::Feedback &feedback,
                                               const std::function<void(const core::train::DistillProgress &)> &onProgress);

} // namespace bitsmith::ui

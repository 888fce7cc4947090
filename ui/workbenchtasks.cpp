// workbenchtasks.cpp: sweep, measurement and "Try it" over core (worker-thread code).
#include "workbenchtasks.h"

#include "core/calibration.h"       // makeCalibrationSequences
#include "core/compression.h"       // compressModel
#include "core/evaluate.h"          // tokenizeTextFile, compareModels
#include "core/generate.h"          // generate
#include "core/sdk/techniqueregistry.h"
#include "core/transformer.h"

#include "core/layerassignment.h"   // assignableLayers

#include <QDir>
#include <QElapsedTimer>
#include <QFileInfo>
#include <QTemporaryDir>

#include <cmath>

namespace bitsmith::ui {

namespace {

QString modelText(const core::Model &model, const QString &given, const char *fallback)
{
    if (!given.isEmpty())
        return given;
    const QString f = model.folder() + QLatin1Char('/') + QLatin1String(fallback);
    return QFileInfo::exists(f) ? f : QString();
}

core::Error noText(const char *what)
{
    return core::fail(core::ErrorCode::InvalidArgument, QStringLiteral("the model folder has no %1").arg(QLatin1String(what)))
        .withHint(QStringLiteral("choose an evaluation text file"));
}

// Scales a sub-step's progress into [from, to] of the whole job.
class SubFeedback : public core::Feedback
{
public:
    SubFeedback(core::Feedback &parent, double from, double to) : m_parent(parent), m_from(from), m_to(to) {}
    void sync()
    {
        if (m_parent.isCancelled())
            cancel();
    }

protected:
    void onProgress(double f) override
    {
        m_parent.setProgress(m_from + (m_to - m_from) * f);
        if (m_parent.isCancelled())
            cancel();
    }
    void onStatus(const QString &t) override
    {
        m_parent.setStatus(t);
        if (m_parent.isCancelled())
            cancel();
    }

private:
    core::Feedback &m_parent;
    double m_from, m_to;
};

core::Expected<std::vector<std::vector<std::int32_t>>> calibrationFor(const core::Model &model, const core::Recipe &recipe,
                                                                      const core::TechniqueRegistry &registry)
{
    auto needs = core::recipeNeedsCalibration(recipe, model, registry);
    if (!needs)
        return core::unexpected(needs.error());
    if (!*needs)
        return std::vector<std::vector<std::int32_t>>{};
    const QString path = modelText(model, recipe.calibration.text, "calib.txt");
    if (path.isEmpty())
        return core::unexpected(noText("calib.txt"));
    auto tokens = core::tokenizeTextFile(model, path);
    if (!tokens)
        return core::unexpected(tokens.error());
    const int length = std::min(recipe.calibration.length > 0 ? recipe.calibration.length : 128, model.config().maxPositions);
    return core::makeCalibrationSequences(*tokens, std::min(recipe.calibration.sequences, 16), length, recipe.calibration.seed);
}

} // namespace

SweepSpec SweepSpec::quick()
{
    SweepSpec s;
    s.options.ctx = 64;
    s.options.windows = 2;
    s.options.calibSequences = 8;
    s.options.calibLength = 64;
    return s;
}

core::Expected<core::SensitivityResult> runSweep(std::shared_ptr<const core::Model> model, const SweepSpec &spec,
                                                 core::Feedback &feedback)
{
    auto settings = core::parseSensitivitySettings(spec.candidates);
    if (!settings)
        return core::unexpected(settings.error());
    const QString evalPath = modelText(*model, spec.evalText, "eval.txt");
    if (evalPath.isEmpty())
        return core::unexpected(noText("eval.txt"));
    const QString calibPath = modelText(*model, spec.calibText, "calib.txt");
    feedback.setStatus(QStringLiteral("tokenizing"));
    auto evalTokens = core::tokenizeTextFile(*model, evalPath);
    if (!evalTokens)
        return core::unexpected(evalTokens.error());
    std::vector<std::int32_t> calib;
    if (!calibPath.isEmpty()) {
        auto c = core::tokenizeTextFile(*model, calibPath);
        if (!c)
            return core::unexpected(c.error());
        calib = std::move(*c);
    }
    SubFeedback setup(feedback, 0.0, 0.1);
    auto analysis = core::SensitivityAnalysis::create(model, *evalTokens, calib, spec.options, &setup);
    if (!analysis)
        return core::unexpected(analysis.error());
    SubFeedback sweep(feedback, 0.1, 1.0);
    auto r = (*analysis)->run(*settings, &sweep);
    if (!r)
        return core::unexpected(r.error());
    r->modelFolder = model->folder();
    r->evalText = evalPath;
    r->calibText = calibPath;
    return r;
}

core::Expected<std::vector<core::MeasuredPoint>> measureRecipes(
    std::shared_ptr<const core::Model> model, const std::vector<MeasureRequest> &requests, const QString &evalText,
    int ctx, int windows, core::Feedback &feedback, const std::function<void(const core::MeasuredPoint &)> &onPoint)
{
    const QString evalPath = modelText(*model, evalText, "eval.txt");
    if (evalPath.isEmpty())
        return core::unexpected(noText("eval.txt"));
    auto tokens = core::tokenizeTextFile(*model, evalPath);
    if (!tokens)
        return core::unexpected(tokens.error());
    core::TechniqueRegistry registry;
    core::EvalOptions eo;
    eo.ctx = ctx;
    eo.maxWindows = windows;
    core::Transformer reference(model, core::LinearBackend::Eigen);
    std::vector<core::MeasuredPoint> out;
    const double n = static_cast<double>(std::max<std::size_t>(1, requests.size()));
    for (std::size_t i = 0; i < requests.size(); ++i) {
        const MeasureRequest &req = requests[i];
        feedback.setStatus(QStringLiteral("measuring %1 (%2/%3)").arg(req.label).arg(i + 1).arg(requests.size()));
        if (feedback.isCancelled())
            return core::unexpected(core::fail(core::ErrorCode::Cancelled, QStringLiteral("cancelled")));
        auto calib = calibrationFor(*model, req.recipe, registry);
        if (!calib)
            return core::unexpected(calib.error());
        SubFeedback sub(feedback, static_cast<double>(i) / n, (static_cast<double>(i) + 0.8) / n);
        auto compressed = core::compressModel(*model, req.recipe, registry, *calib, &sub);
        if (!compressed)
            return core::unexpected(compressed.error());
        core::Transformer candidate(compressed->model, core::LinearBackend::Eigen);
        auto cmp = core::compareModels(reference, candidate, *tokens, eo);
        if (!cmp)
            return core::unexpected(cmp.error());
        core::MeasuredPoint p;
        p.kind = req.kind;
        p.label = req.label;
        p.bytes = req.bytes;
        p.bitsPerWeight = req.bitsPerWeight;
        p.predicted = req.predicted;
        p.kl = cmp->meanKl;
        p.deltaLoss = cmp->candidate.meanNll - cmp->reference.meanNll;
        p.perplexity = cmp->candidate.perplexity;
        p.recipe = req.recipe;
        if (onPoint)
            onPoint(p);
        out.push_back(std::move(p));
        feedback.setProgress((static_cast<double>(i) + 1.0) / n);
    }
    return out;
}

core::Expected<TryItResult> tryRecipe(std::shared_ptr<const core::Model> model, const core::Recipe &recipe,
                                      const QString &prompt, int maxTokens, core::Feedback &feedback)
{
    QElapsedTimer timer;
    timer.start();
    auto tokenizer = model->tokenizer();
    if (!tokenizer)
        return core::unexpected(core::fail(core::ErrorCode::Unsupported, QStringLiteral("the model has no tokenizer.json"))
                                    .inFile(model->folder()));
    core::TechniqueRegistry registry;
    auto calib = calibrationFor(*model, recipe, registry);
    if (!calib)
        return core::unexpected(calib.error());
    feedback.setStatus(QStringLiteral("compressing"));
    SubFeedback sub(feedback, 0.0, 0.6);
    auto compressed = core::compressModel(*model, recipe, registry, *calib, &sub);
    if (!compressed)
        return core::unexpected(compressed.error());
    core::Transformer original(model, core::LinearBackend::Eigen);
    core::Transformer candidate(compressed->model, core::LinearBackend::Eigen);
    const std::string utf8 = prompt.toStdString();
    const std::vector<std::int32_t> ids = tokenizer->encode(utf8, true); // as the CLI's generate
    if (ids.empty())
        return core::unexpected(core::fail(core::ErrorCode::InvalidArgument, QStringLiteral("the prompt is empty"))
                                    .forParameter(QStringLiteral("prompt")));
    core::GenerateOptions go;
    go.maxTokens = maxTokens;
    go.temperature = 0.0; // greedy: the difference is the compression's, not the sampler's
    TryItResult r;
    feedback.setStatus(QStringLiteral("generating (original)"));
    auto a = core::generate(original, ids, go, {}, &feedback);
    if (!a)
        return core::unexpected(a.error());
    feedback.setProgress(0.7);
    feedback.setStatus(QStringLiteral("generating (compressed)"));
    auto b = core::generate(candidate, ids, go, {}, &feedback);
    if (!b)
        return core::unexpected(b.error());
    feedback.setProgress(0.8);
    r.original = QString::fromStdString(tokenizer->decode(*a, true));
    r.compressed = QString::fromStdString(tokenizer->decode(*b, true));
    const QString evalPath = modelText(*model, {}, "eval.txt");
    if (!evalPath.isEmpty()) {
        feedback.setStatus(QStringLiteral("perplexity and KL"));
        auto tokens = core::tokenizeTextFile(*model, evalPath);
        if (!tokens)
            return core::unexpected(tokens.error());
        core::EvalOptions eo;
        eo.ctx = std::min(128, model->config().maxPositions);
        eo.maxWindows = 4;
        auto cmp = core::compareModels(original, candidate, *tokens, eo, &feedback);
        if (!cmp)
            return core::unexpected(cmp.error());
        r.originalPerplexity = cmp->reference.perplexity;
        r.compressedPerplexity = cmp->candidate.perplexity;
        r.kl = cmp->meanKl;
    }
    r.bitsPerWeight = compressed->effectiveBitsPerWeight;
    r.seconds = static_cast<double>(timer.elapsed()) / 1000.0;
    feedback.setProgress(1.0);
    return r;
}

core::Expected<DistillOutcome> runDistillation(std::shared_ptr<const core::Model> teacher, const DistillSpec &spec,
                                               core::Feedback &feedback,
                                               const std::function<void(const core::train::DistillProgress &)> &onProgress)
{
    namespace train = core::train;
    const QString trainPath = modelText(*teacher, spec.trainText, "calib.txt");
    if (trainPath.isEmpty())
        return core::unexpected(noText("calib.txt"));
    const QString evalPath = modelText(*teacher, spec.evalText, "eval.txt");
    if (evalPath.isEmpty())
        return core::unexpected(noText("eval.txt"));
    const bool fromRecipe = spec.student == QLatin1String("recipe");
    // 0–15 %: the student; 15–95 %: training; 95–100 %: saving and measuring.
    std::shared_ptr<core::Model> studentModel;
    double compressedBpw = 0;
    core::Expected<train::TrainModel> tm = core::unexpected(core::Error{});
    if (fromRecipe) {
        core::TechniqueRegistry registry;
        auto calib = calibrationFor(*teacher, spec.recipe, registry);
        if (!calib)
            return core::unexpected(calib.error());
        feedback.setStatus(QStringLiteral("compressing the student"));
        SubFeedback sub(feedback, 0.0, 0.15);
        auto compressed = core::compressModel(*teacher, spec.recipe, registry, *calib, &sub);
        if (!compressed)
            return core::unexpected(compressed.error());
        studentModel = compressed->model;
        compressedBpw = compressed->effectiveBitsPerWeight;
        tm = train::TrainModel::fromModel(*studentModel);
    } else {
        tm = train::TrainModel::architectureStudent(*teacher, spec.student, spec.options.seed);
    }
    if (!tm)
        return core::unexpected(tm.error());
    if (auto ok = train::checkStudentSavable(*tm, *teacher); !ok)
        return core::unexpected(ok.error());
    auto trainIds = core::tokenizeTextFile(*teacher, trainPath);
    if (!trainIds)
        return core::unexpected(trainIds.error());
    auto evalIds = core::tokenizeTextFile(*teacher, evalPath);
    if (!evalIds)
        return core::unexpected(evalIds.error());
    auto d = train::Distiller::create(teacher, std::move(*tm), std::move(*trainIds), *evalIds, spec.options);
    if (!d)
        return core::unexpected(d.error());
    DistillOutcome out;
    feedback.setStatus(QStringLiteral("validation before training"));
    const double teacherVal = (*d)->teacherValidationLoss();
    const double before = (*d)->validationLoss();
    out.teacherPerplexity = std::exp(teacherVal);
    out.perplexityBefore = std::exp(before);
    // The Distiller reports progress as steps / total: map it into 15–95 %.
    SubFeedback trainFeedback(feedback, 0.15, 0.95);
    auto ran = (*d)->run(&trainFeedback, [&](const train::DistillProgress &p) {
        trainFeedback.sync();
        if (onProgress)
            onProgress(p);
        trainFeedback.sync(); // a cancel while paused is seen before the next step
    });
    if (!ran)
        return core::unexpected(ran.error());
    const auto &history = (*d)->history();
    const double after = !history.empty() && std::isfinite(history.back().valLoss) ? history.back().valLoss
                                                                                   : (*d)->validationLoss();
    out.perplexityAfter = std::exp(after);
    out.steps = (*d)->step();

    feedback.setStatus(QStringLiteral("saving and measuring the student"));
    QTemporaryDir tmp;
    if (!tmp.isValid())
        return core::unexpected(core::fail(core::ErrorCode::Io, QStringLiteral("cannot create a temporary folder")));
    const QString folder = QDir(tmp.path()).filePath(QStringLiteral("student"));
    auto saved = studentModel ? train::saveStudent((*d)->student(), *studentModel, *teacher, folder)
                              : train::saveDenseStudent((*d)->student(), teacher->folder(), folder);
    if (!saved)
        return core::unexpected(saved.error());
    auto loaded = core::Model::load(folder);
    if (!loaded)
        return core::unexpected(loaded.error());
    std::shared_ptr<const core::Model> distilled = std::move(*loaded);
    core::Transformer reference(teacher, core::LinearBackend::Eigen);
    core::Transformer candidate(distilled, core::LinearBackend::Eigen);
    core::EvalOptions eo;
    eo.ctx = std::min(128, teacher->config().maxPositions);
    eo.maxWindows = spec.measureWindows;
    auto cmp = core::compareModels(reference, candidate, *evalIds, eo, &feedback);
    if (!cmp)
        return core::unexpected(cmp.error());

    core::MeasuredPoint &p = out.point;
    p.kind = QStringLiteral("distilled");
    p.kl = cmp->meanKl;
    p.deltaLoss = cmp->candidate.meanNll - cmp->reference.meanNll;
    p.perplexity = cmp->candidate.perplexity;
    if (fromRecipe) {
        p.label = QStringLiteral("distilled %1 bit").arg(spec.recipeBitsPerWeight, 0, 'f', 2);
        p.bytes = spec.recipeBytes;
        p.bitsPerWeight = spec.recipeBitsPerWeight;
        p.predicted = spec.recipePredicted;
        p.recipe = spec.recipe;
        out.compressedBitsPerWeight = compressedBpw;
    } else {
        double params = 0;
        for (const core::AssignableLayer &l : core::assignableLayers(*distilled))
            if (!l.isHead) // the document's compressible layers are the blocks' linears
                params += static_cast<double>(l.parameters());
        p.label = QStringLiteral("distilled %1").arg(spec.student);
        p.bytes = params * spec.denseBytesPerParameter;
        p.bitsPerWeight = spec.teacherParameters > 0 ? 8.0 * p.bytes / spec.teacherParameters : 0.0;
        p.predicted = 0.0; // no prediction for an architecture change
    }
    feedback.setProgress(1.0);
    return out;
}

} // namespace bitsmith::ui

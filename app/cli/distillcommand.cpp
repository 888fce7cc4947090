// distillcommand.cpp: `bitsmith-cli distill`: knowledge distillation from a teacher into a
// student (a compressed model folder, trained quantization-aware on its frozen grids / with its
// zeros frozen, or an architecture change of the teacher such as layers:every-other or mlp:0.5),
// through the core engine of core/train/distill.h. Progress lines come from the engine through a
// Feedback; the result is a model folder that `eval` runs.
#include "app/cli/clicommon.h"
#include "app/cli/commands.h"

#include "core/evaluate.h"     // tokenizeTextFile
#include "core/train/distill.h" // Distiller, saveStudent

#include <QDir>
#include <QFileInfo>
#include <QJsonArray>
#include <QJsonDocument>

#include <cmath>

namespace bitsmith::cli {

namespace {

// Progress lines from the engine: on stdout in text mode, on stderr with --json (stdout then
// holds only the final JSON object); nothing with --quiet.
class DistillFeedback : public Feedback
{
public:
    DistillFeedback(bool json, bool quiet)
        : m_out(json ? stderr : stdout)
        , m_quiet(quiet)
    {}

protected:
    void onLog(const QString &line) override
    {
        if (m_quiet)
            return;
        std::fprintf(m_out, "distill: %s\n", qPrintable(line));
        std::fflush(m_out);
    }

private:
    FILE *m_out;
    bool m_quiet;
};

bool doubleOption(const QCommandLineParser &p, const QCommandLineOption &o, double &out, double lo, double hi, int &code)
{
    if (!p.isSet(o))
        return true;
    bool ok = false;
    out = p.value(o).toDouble(&ok);
    if (!ok || !std::isfinite(out) || out < lo || out > hi) {
        code = usageError(QStringLiteral("--%1 must be a number in [%2, %3]").arg(o.names().first()).arg(lo).arg(hi),
                          QStringLiteral("see bitsmith-cli distill --help"));
        return false;
    }
    return true;
}

double ppl(double nll) { return std::isfinite(nll) ? std::exp(nll) : nll; }

QJsonValue num(double v) { return std::isfinite(v) ? QJsonValue(v) : QJsonValue(); }

} // namespace

int cmdDistill(const QStringList &args)
{
    Common c;
    QCommandLineOption student(QStringLiteral("student"), QStringLiteral("A compressed model folder, or an architecture change of the teacher: layers:every-other, layers:K, mlp:R, plus init:random (comma-separated)."), QStringLiteral("STUDENT"));
    QCommandLineOption text(QStringLiteral("text"), QStringLiteral("Training text file (UTF-8)."), QStringLiteral("FILE"));
    QCommandLineOption val(QStringLiteral("val"), QStringLiteral("Validation text file (perplexity windows of --ctx tokens)."), QStringLiteral("FILE"));
    QCommandLineOption steps(QStringLiteral("steps"), QStringLiteral("Optimizer steps."), QStringLiteral("N"));
    QCommandLineOption lr(QStringLiteral("lr"), QStringLiteral("Peak learning rate (default 1e-4)."), QStringLiteral("X"));
    QCommandLineOption temperature(QStringLiteral("temperature"), QStringLiteral("Softmax temperature of the KD term (default 2)."), QStringLiteral("T"));
    QCommandLineOption alpha(QStringLiteral("alpha"), QStringLiteral("Weight of the KD term; 1 - alpha weighs CE (default 0.5; 0 = plain fine-tuning)."), QStringLiteral("A"));
    QCommandLineOption batch(QStringLiteral("batch"), QStringLiteral("Sequences per micro-batch (default 4)."), QStringLiteral("B"));
    QCommandLineOption ctx(QStringLiteral("ctx"), QStringLiteral("Tokens per sequence (default 128)."), QStringLiteral("N"));
    QCommandLineOption accumulate(QStringLiteral("accumulate"), QStringLiteral("Micro-batches per step (default 1)."), QStringLiteral("K"));
    QCommandLineOption warmup(QStringLiteral("warmup"), QStringLiteral("Warm-up steps (default steps/10)."), QStringLiteral("N"));
    QCommandLineOption weightDecay(QStringLiteral("weight-decay"), QStringLiteral("AdamW weight decay on matrices (default 0)."), QStringLiteral("W"));
    QCommandLineOption clip(QStringLiteral("clip"), QStringLiteral("Global gradient-norm clip (default 1; 0 = off)."), QStringLiteral("C"));
    QCommandLineOption hiddenWeight(QStringLiteral("hidden-weight"), QStringLiteral("Weight of a hidden-state loss (default 0 = off)."), QStringLiteral("B"));
    QCommandLineOption hiddenLoss(QStringLiteral("hidden-loss"), QStringLiteral("mse (default) or cosine."), QStringLiteral("NAME"));
    QCommandLineOption hiddenLayers(QStringLiteral("hidden-layers"), QStringLiteral("Student blocks of the hidden-state loss, e.g. 1,3 (default all)."), QStringLiteral("LIST"));
    QCommandLineOption evalEvery(QStringLiteral("eval-every"), QStringLiteral("Validation every N steps (default steps/5)."), QStringLiteral("N"));
    QCommandLineOption valWindows(QStringLiteral("val-windows"), QStringLiteral("Validation windows (default 16; 0 = all)."), QStringLiteral("K"));
    QCommandLineOption logEvery(QStringLiteral("log-every"), QStringLiteral("A progress line every N steps (default steps/20)."), QStringLiteral("N"));
    QCommandLineOption seed(QStringLiteral("seed"), QStringLiteral("Seed of the window sampler (default 0)."), QStringLiteral("S"));
    QCommandLineOption checkpoint(QStringLiteral("checkpoint"), QStringLiteral("Checkpoint folder (written at the end, on cancel, and every --checkpoint-every steps)."), QStringLiteral("DIR"));
    QCommandLineOption checkpointEvery(QStringLiteral("checkpoint-every"), QStringLiteral("Checkpoint every N steps."), QStringLiteral("N"));
    QCommandLineOption resume(QStringLiteral("resume"), QStringLiteral("Resume from a checkpoint folder (same options)."), QStringLiteral("DIR"));
    QCommandLineOption out(QStringLiteral("out"), QStringLiteral("Output model folder."), QStringLiteral("DIR"));
    c.parser.addOptions({student, text, val, steps, lr, temperature, alpha, batch, ctx, accumulate, warmup, weightDecay, clip,
                         hiddenWeight, hiddenLoss, hiddenLayers, evalEvery, valWindows, logEvery, seed, checkpoint,
                         checkpointEvery, resume, out});
    int code = 0;
    const QString usage = QStringLiteral("distill TEACHER --student STUDENT --text TRAIN [--val VAL] --steps N [--lr X] [--temperature T] "
                                         "[--alpha A] [--batch B] [--ctx N] [--accumulate K] [--checkpoint DIR] [--resume DIR] --out DIR [--json]");
    if (!parseArgs(c, args, 1, usage, code))
        return code;
    for (const auto *o : {&student, &text, &steps, &out})
        if (!c.parser.isSet(*o))
            return usageError(QStringLiteral("--%1 is required").arg(o->names().first()), QStringLiteral("usage: bitsmith-cli %1").arg(usage));
    train::DistillOptions o;
    double temp = o.temperature, alph = o.alpha;
    if (!intOption(c.parser, steps, o.steps, 1, code) || !intOption(c.parser, batch, o.batch, 1, code)
        || !intOption(c.parser, ctx, o.ctx, 2, code) || !intOption(c.parser, accumulate, o.accumulate, 1, code)
        || !intOption(c.parser, warmup, o.warmupSteps, 0, code) || !intOption(c.parser, evalEvery, o.evalEvery, 1, code)
        || !intOption(c.parser, valWindows, o.valWindows, 0, code) || !intOption(c.parser, checkpointEvery, o.checkpointEvery, 1, code)
        || !doubleOption(c.parser, lr, o.learningRate, 1e-12, 10.0, code) || !doubleOption(c.parser, temperature, temp, 1e-3, 1e3, code)
        || !doubleOption(c.parser, alpha, alph, 0.0, 1.0, code) || !doubleOption(c.parser, weightDecay, o.weightDecay, 0.0, 10.0, code)
        || !doubleOption(c.parser, clip, o.clipNorm, 0.0, 1e9, code) || !doubleOption(c.parser, hiddenWeight, o.hiddenWeight, 0.0, 1e6, code))
        return code;
    o.temperature = static_cast<float>(temp);
    o.alpha = static_cast<float>(alph);
    o.logEvery = std::max(1, o.steps / 20);
    if (!intOption(c.parser, logEvery, o.logEvery, 1, code))
        return code;
    if (c.parser.isSet(seed))
        o.seed = c.parser.value(seed).toULongLong();
    if (c.parser.isSet(hiddenLoss)) {
        const QString h = c.parser.value(hiddenLoss);
        if (h != QLatin1String("mse") && h != QLatin1String("cosine"))
            return usageError(QStringLiteral("--hidden-loss must be mse or cosine"), QStringLiteral("e.g. --hidden-loss cosine"));
        o.hiddenCosine = h == QLatin1String("cosine");
    }
    if (c.parser.isSet(hiddenLayers))
        for (const QString &part : c.parser.value(hiddenLayers).split(QLatin1Char(','), Qt::SkipEmptyParts)) {
            bool ok = false;
            o.hiddenLayers.push_back(part.toInt(&ok));
            if (!ok)
                return usageError(QStringLiteral("--hidden-layers takes block numbers"), QStringLiteral("e.g. --hidden-layers 1,3"));
        }
    if (c.parser.isSet(checkpoint))
        o.checkpointDir = c.parser.value(checkpoint);
    else if (c.parser.isSet(resume))
        o.checkpointDir = c.parser.value(resume); // keep checkpointing where we resumed from

    const bool quiet = c.parser.isSet(c.quiet), json = c.parser.isSet(c.json);
    auto teacher = loadModel(c.parser.positionalArguments().first(), quiet);
    if (!teacher)
        return reportError(teacher.error());
    const QString studentSpec = c.parser.value(student);
    std::shared_ptr<Model> studentModel;
    Expected<train::TrainModel> tm = unexpected(Error{});
    if (QFileInfo::exists(QDir(studentSpec).filePath(QStringLiteral("config.json")))) {
        auto sm = loadModel(studentSpec, quiet);
        if (!sm)
            return reportError(sm.error());
        studentModel = *sm;
        tm = train::TrainModel::fromModel(*studentModel);
    } else {
        tm = train::TrainModel::architectureStudent(**teacher, studentSpec, o.seed);
    }
    if (!tm)
        return reportError(tm.error());
    if (auto ok = train::checkStudentSavable(*tm, **teacher); !ok)
        return reportError(ok.error());
    auto trainIds = tokenizeTextFile(**teacher, c.parser.value(text));
    if (!trainIds)
        return reportError(trainIds.error());
    std::vector<std::int32_t> valIds;
    if (c.parser.isSet(val)) {
        auto v = tokenizeTextFile(**teacher, c.parser.value(val));
        if (!v)
            return reportError(v.error());
        valIds = std::move(*v);
    }
    const std::int64_t studentParams = tm->parameterCount();
    const bool needTeacher = o.alpha > 0.0f || o.hiddenWeight > 0.0;
    auto d = train::Distiller::create(*teacher, std::move(*tm), std::move(*trainIds), std::move(valIds), o);
    if (!d)
        return reportError(d.error());
    if (c.parser.isSet(resume))
        if (auto ok = (*d)->loadCheckpoint(c.parser.value(resume)); !ok)
            return reportError(ok.error());
    DistillFeedback fb(json, quiet);
    const double teacherVal = c.parser.isSet(val) ? (*d)->teacherValidationLoss() : std::nan("");
    const double before = (*d)->validationLoss();
    if (std::isfinite(before))
        fb.log(QStringLiteral("step %1/%2  val %3 (ppl %4), teacher val %5 (ppl %6)")
                   .arg((*d)->step())
                   .arg(o.steps)
                   .arg(before, 0, 'f', 4)
                   .arg(ppl(before), 0, 'f', 2)
                   .arg(teacherVal, 0, 'f', 4)
                   .arg(ppl(teacherVal), 0, 'f', 2));
    QElapsedTimer timer;
    timer.start();
    if (auto ok = (*d)->run(&fb); !ok)
        return reportError(ok.error());
    const double seconds = static_cast<double>(timer.elapsed()) / 1000.0;
    const double after = (*d)->history().empty() || !std::isfinite((*d)->history().back().valLoss) ? (*d)->validationLoss()
                                                                                                    : (*d)->history().back().valLoss;
    const QString outDir = c.parser.value(out);
    auto saved = studentModel ? train::saveStudent((*d)->student(), *studentModel, **teacher, outDir)
                              : train::saveDenseStudent((*d)->student(), (*teacher)->folder(), outDir);
    if (!saved)
        return reportError(saved.error());
    // Share of the perplexity gap to the teacher that training closed.
    const double recovered = (ppl(before) - ppl(after)) / (ppl(before) - ppl(teacherVal));
    double tokensPerSecond = 0.0;
    if (!(*d)->history().empty())
        tokensPerSecond = (*d)->history().back().tokensPerSecond;
    if (json) {
        QJsonArray hist;
        for (const train::DistillProgress &p : (*d)->history())
            hist.append(QJsonObject{{QStringLiteral("step"), p.step},
                                    {QStringLiteral("lr"), p.learningRate},
                                    {QStringLiteral("loss"), p.loss},
                                    {QStringLiteral("kd"), p.kd},
                                    {QStringLiteral("ce"), p.ce},
                                    {QStringLiteral("hidden"), p.hidden},
                                    {QStringLiteral("grad_norm"), p.gradNorm},
                                    {QStringLiteral("val_loss"), num(p.valLoss)},
                                    {QStringLiteral("tokens_per_second"), p.tokensPerSecond}});
        printJson(QJsonObject{{QStringLiteral("teacher"), (*teacher)->folder()},
                              {QStringLiteral("student"), studentSpec},
                              {QStringLiteral("student_parameters"), static_cast<double>(studentParams)},
                              {QStringLiteral("steps"), (*d)->step()},
                              {QStringLiteral("teacher_used"), needTeacher},
                              {QStringLiteral("seconds"), seconds},
                              {QStringLiteral("tokens_per_second"), tokensPerSecond},
                              {QStringLiteral("teacher_val_loss"), num(teacherVal)},
                              {QStringLiteral("val_loss_before"), num(before)},
                              {QStringLiteral("val_loss_after"), num(after)},
                              {QStringLiteral("teacher_perplexity"), num(ppl(teacherVal))},
                              {QStringLiteral("perplexity_before"), num(ppl(before))},
                              {QStringLiteral("perplexity_after"), num(ppl(after))},
                              {QStringLiteral("gap_recovered"), num(recovered)},
                              {QStringLiteral("out"), QDir(outDir).absolutePath()},
                              {QStringLiteral("history"), hist}});
    } else {
        if (std::isfinite(before))
            std::printf("validation perplexity %.3f -> %.3f (teacher %.3f): %.1f%% of the gap recovered\n", ppl(before), ppl(after),
                        ppl(teacherVal), 100.0 * recovered);
        std::printf("%d steps in %.1f s (%.0f tokens/s)\nwrote %s\n", (*d)->step(), seconds, tokensPerSecond,
                    qPrintable(QDir(outDir).absolutePath()));
    }
    return 0;
}

} // namespace bitsmith::cli

// bench_train: training-step throughput of core/train on a model (default: the bundled one),
// one thread, beside PyTorch's on the same CPU in the same run (tools/train_throughput.py: the
// plain-torch transformers definition, f32, torch.set_num_threads(1)). Measures tokens per
// second of CPU time (the machine may be shared; CPU time is what one core delivers) and of
// wall time, for: a student training step (forward + CE + backward), the teacher's forward
// (core runtime, oneDNN), and a whole distillation step (teacher forward + student step + AdamW).
// Usage: bench_train [MODEL] [--batch B] [--ctx N] [--steps K] [--no-torch]
#include "core/model.h"
#include "core/threading.h"
#include "core/train/distill.h"
#include "core/train/ops.h"
#include "core/train/trainmodel.h"
#include "core/transformer.h"

#include <QCoreApplication>
#include <QJsonDocument>
#include <QJsonObject>
#include <QProcess>
#include <QStringList>

#include <chrono>
#include <cstdio>
#include <ctime>
#include <functional>

using namespace bitsmith::core;
using namespace bitsmith::core::train;

namespace {

struct Rate
{
    double cpu = 0, wall = 0; // tokens per second
};

double cpuSeconds()
{
    timespec ts{};
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

Rate time(const std::function<void()> &fn, int steps, double tokens)
{
    fn(); // warm-up (oneDNN primitives, allocations)
    const double c0 = cpuSeconds();
    const auto w0 = std::chrono::steady_clock::now();
    for (int i = 0; i < steps; ++i)
        fn();
    const double cpu = cpuSeconds() - c0;
    const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - w0).count();
    return {tokens * steps / cpu, tokens * steps / wall};
}

} // namespace

int main(int argc, char **argv)
{
    QCoreApplication app(argc, argv);
    QStringList args = app.arguments();
    QString modelName = QStringLiteral("default");
    int batch = 4, ctx = 128, steps = 3;
    bool torch = true;
    for (int i = 1; i < args.size(); ++i) {
        if (args[i] == QLatin1String("--batch") && i + 1 < args.size())
            batch = args[++i].toInt();
        else if (args[i] == QLatin1String("--ctx") && i + 1 < args.size())
            ctx = args[++i].toInt();
        else if (args[i] == QLatin1String("--steps") && i + 1 < args.size())
            steps = args[++i].toInt();
        else if (args[i] == QLatin1String("--no-torch"))
            torch = false;
        else
            modelName = args[i];
    }
    setThreadCount(1);
    auto model = Model::load(modelName);
    if (!model) {
        std::fprintf(stderr, "%s\n", qPrintable(model.error().toString()));
        return 1;
    }
    auto student = TrainModel::fromModel(**model);
    if (!student) {
        std::fprintf(stderr, "%s\n", qPrintable(student.error().toString()));
        return 1;
    }
    const std::int64_t n = static_cast<std::int64_t>(batch) * ctx, vocab = student->config().vocabSize;
    std::vector<std::int32_t> ids(static_cast<std::size_t>(n)), targets(ids.size());
    for (std::size_t i = 0; i < ids.size(); ++i) {
        ids[i] = static_cast<std::int32_t>((i * 2654435761u) % static_cast<std::size_t>(vocab));
        targets[i] = static_cast<std::int32_t>((i * 40503u + 7) % static_cast<std::size_t>(vocab));
    }
    Tape tape;
    std::vector<float> d;
    const Rate step = time([&] {
        student->zeroGrad();
        student->forward(ids.data(), batch, ctx, tape);
        d.resize(tape.logits.size());
        crossEntropy(tape.logits.data(), n, vocab, targets.data(), d.data());
        student->backward(tape, d);
    }, steps, static_cast<double>(n));
    Transformer teacher(*model);
    const Rate fwd = time([&] { (void)teacherLogits(teacher, ids, batch, ctx); }, steps, static_cast<double>(n));
    AdamW opt(*student, {});
    const Rate kd = time([&] {
        const auto tl = teacherLogits(teacher, ids, batch, ctx);
        student->zeroGrad();
        student->forward(ids.data(), batch, ctx, tape);
        d.resize(tape.logits.size());
        distillationLoss(tape.logits.data(), tl.data(), targets.data(), n, vocab, 2.0f, 0.5f, d.data());
        student->backward(tape, d);
        clipGradients(*student, 1.0);
        opt.step(*student, 1e-5);
    }, steps, static_cast<double>(n));
    std::printf("bench_train: %s, batch %d x ctx %d, 1 thread, %d steps each (tokens/s of CPU time; wall in brackets)\n",
                qPrintable(modelName), batch, ctx, steps);
    std::printf("  bitsmith student step (fwd+CE+bwd)   %8.1f  [%8.1f]\n", step.cpu, step.wall);
    std::printf("  bitsmith teacher forward (oneDNN)    %8.1f  [%8.1f]\n", fwd.cpu, fwd.wall);
    std::printf("  bitsmith distillation step (all)     %8.1f  [%8.1f]\n", kd.cpu, kd.wall);
    if (!torch)
        return 0;
    QProcess py;
    py.setProcessChannelMode(QProcess::ForwardedErrorChannel);
    QStringList pyArgs{QStringLiteral(BITSMITH_SOURCE_DIR "/tools/train_throughput.py"), (*model)->folder(),
                       QStringLiteral("--batch"), QString::number(batch), QStringLiteral("--ctx"), QString::number(ctx),
                       QStringLiteral("--steps"), QString::number(steps)};
    py.start(QStringLiteral("/usr/bin/python3"), pyArgs);
    if (!py.waitForFinished(-1) || py.exitCode() != 0) {
        std::printf("  PyTorch baseline unavailable (tools/train_throughput.py failed)\n");
        return 0;
    }
    const QJsonObject t = QJsonDocument::fromJson(py.readAllStandardOutput().trimmed()).object();
    const double tStep = t.value(QStringLiteral("train_step_tokens_per_cpu_s")).toDouble();
    const double tFwd = t.value(QStringLiteral("teacher_forward_tokens_per_cpu_s")).toDouble();
    std::printf("  PyTorch %s student step              %8.1f  [%8.1f]   bitsmith/torch %.2fx\n",
                qPrintable(t.value(QStringLiteral("torch")).toString()), tStep,
                t.value(QStringLiteral("train_step_tokens_per_wall_s")).toDouble(), step.cpu / tStep);
    std::printf("  PyTorch teacher forward (no_grad)    %8.1f  [%8.1f]   bitsmith/torch %.2fx\n", tFwd,
                t.value(QStringLiteral("teacher_forward_tokens_per_wall_s")).toDouble(), fwd.cpu / tFwd);
    return 0;
}

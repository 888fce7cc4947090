// bench_runtime: evaluation (prefill, M = ctx) and decoding (M = 1) speed of the bundled model
// with oneDNN linears against a plain Eigen baseline, and of the same model compressed in this run
// (RTN w4 g128 on the packed kernel, SmoothQuant W8A8 on oneDNN int8), all measured in the same
// run, one thread by default.
// Usage: bench_runtime [MODEL] [--threads N] [--ctx N] [--windows K] [--decode N]
#include "core/calibration.h"
#include "core/compression.h"
#include "core/evaluate.h"
#include "core/sdk/techniqueregistry.h"
#include "core/model.h"
#include "core/threading.h"
#include "core/transformer.h"

#include <QCoreApplication>
#include <QStringList>

#include <chrono>
#include <cstdio>

using namespace bitsmith::core;

namespace {

struct Speed
{
    double evalTokensPerSecond = 0;
    double decodeTokensPerSecond = 0;
};

Speed measure(const std::shared_ptr<const Model> &model, LinearBackend backend, const std::vector<std::int32_t> &ids, int ctx,
              int windows, int decodeTokens)
{
    Transformer tf(model, backend);
    EvalOptions opt;
    opt.ctx = ctx;
    opt.maxWindows = windows;
    // warm-up: creates the oneDNN primitives for both shapes
    EvalOptions warm = opt;
    warm.maxWindows = 1;
    (void)evaluatePerplexity(tf, ids, warm);
    Speed s;
    auto r = evaluatePerplexity(tf, ids, opt);
    if (!r) {
        std::fprintf(stderr, "%s\n", qPrintable(r.error().toString()));
        std::exit(1);
    }
    s.evalTokensPerSecond = r->tokensPerSecond;
    // decode: one token at a time with the KV cache
    KVCache cache = tf.makeCache(decodeTokens + 1);
    std::vector<float> logits;
    const std::int32_t first[1] = {ids[0]};
    (void)tf.forward(first, cache, logits, true);
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < decodeTokens; ++i) {
        const std::int32_t one[1] = {ids[static_cast<size_t>(i + 1)]};
        (void)tf.forward(one, cache, logits, true);
    }
    const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    s.decodeTokensPerSecond = decodeTokens / sec;
    return s;
}

} // namespace

int main(int argc, char **argv)
{
    prepareProcessEnvironment(argc, argv);
    QCoreApplication app(argc, argv);
    QStringList args = app.arguments();
    QString modelName = QStringLiteral("default");
    int threads = 1, ctx = 256, windows = 8, decode = 200;
    for (int i = 1; i < args.size(); ++i) {
        if (args[i] == QLatin1String("--threads") && i + 1 < args.size())
            threads = args[++i].toInt();
        else if (args[i] == QLatin1String("--ctx") && i + 1 < args.size())
            ctx = args[++i].toInt();
        else if (args[i] == QLatin1String("--windows") && i + 1 < args.size())
            windows = args[++i].toInt();
        else if (args[i] == QLatin1String("--decode") && i + 1 < args.size())
            decode = args[++i].toInt();
        else
            modelName = args[i];
    }
    setThreadCount(threads);
    auto model = Model::load(modelName);
    if (!model || !(*model)->tokenizer()) {
        std::fprintf(stderr, "cannot load %s\n", model ? "a tokenizer" : qPrintable(model.error().toString()));
        return 1;
    }
    auto text = readTextFile((*model)->folder() + QStringLiteral("/eval.txt"));
    if (!text) {
        std::fprintf(stderr, "%s\n", qPrintable(text.error().toString()));
        return 1;
    }
    const auto ids = (*model)->tokenizer()->encode(*text);
    std::printf("model %s: %lld parameters, %d threads, ctx %d, %d windows, %d decode steps\n",
                qPrintable((*model)->folder()), static_cast<long long>((*model)->totalParameters()), threads, ctx,
                windows, decode);
    const Speed eigen = measure(*model, LinearBackend::Eigen, ids, ctx, windows, decode);
    const Speed onednn = measure(*model, LinearBackend::OneDnn, ids, ctx, windows, decode);
    std::printf("%-22s %14s %14s\n", "backend", "eval tok/s", "decode tok/s");
    std::printf("%-22s %14.1f %14.1f\n", "eigen f32 (baseline)", eigen.evalTokensPerSecond, eigen.decodeTokensPerSecond);
    std::printf("%-22s %14.1f %14.1f\n", "onednn f32", onednn.evalTokensPerSecond, onednn.decodeTokensPerSecond);
    std::printf("%-22s %14.2fx %13.2fx\n", "ratio onednn/eigen", onednn.evalTokensPerSecond / eigen.evalTokensPerSecond,
                onednn.decodeTokensPerSecond / eigen.decodeTokensPerSecond);

    // The same model compressed in this run.
    TechniqueRegistry registry;
    auto calibIds = ids;
    if (auto calibText = readTextFile((*model)->folder() + QStringLiteral("/calib.txt")); calibText)
        calibIds = (*model)->tokenizer()->encode(*calibText);
    auto calibration = makeCalibrationSequences(calibIds, 16, ctx, 0);
    struct Variant
    {
        const char *name;
        QString technique;
        QuantFormat format;
    } variants[] = {{"w4 g128 (packed)", QStringLiteral("rtn"), {4, 128, false}},
                    {"w8a8 (onednn int8)", QStringLiteral("smoothquant"), {8, 0, true}}};
    std::printf("\n%-22s %14s %14s %10s %10s\n", "compressed", "eval tok/s", "decode tok/s", "eval x", "decode x");
    for (const Variant &v : variants) {
        Recipe recipe;
        recipe.defaultTechnique = v.technique;
        recipe.defaultFormat = v.format;
        auto compressed = compressModel(**model, recipe, registry, *calibration);
        if (!compressed) {
            std::fprintf(stderr, "%s\n", qPrintable(compressed.error().toString()));
            return 1;
        }
        const Speed s = measure(compressed->model, LinearBackend::OneDnn, ids, ctx, windows, decode);
        std::printf("%-22s %14.1f %14.1f %9.2fx %9.2fx\n", v.name, s.evalTokensPerSecond, s.decodeTokensPerSecond,
                    s.evalTokensPerSecond / onednn.evalTokensPerSecond, s.decodeTokensPerSecond / onednn.decodeTokensPerSecond);
    }
    std::printf("(x = against onednn f32 above; the head and embeddings stay f32 in every variant)\n");
    return 0;
}

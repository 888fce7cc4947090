// bench_sparse: the sparse linear kernels against dense oneDNN f32 (and oneDNN int8 W8A8),
// measured in the same run, one thread by default:
//   1. kernels at LLM shapes (N x K = 4096 x 4096, 11008 x 4096, 4096 x 11008) for M = 1, 8, 64:
//      dense f32, int8 (W8A8), 2:4 f32, 2:4 int8 (weight-only), CSR at 50 / 70 / 90 % sparsity — ms
//      per call and the speed-up over dense f32 (2:4 int8: over dense int8); 2:4 and CSR here never
//      hand over to dense;
//   2. end to end on the bundled model: evaluation (ctx 256) and decoding tokens/s of the dense
//      model, 50 % unstructured and 2:4 magnitude-pruned copies (on the sparse kernels, and on the
//      dense ones with BITSMITH_SPARSE=0), and structured pruning of 25 % of the MLP neurons and
//      50 % of the heads (the smallest step on this model: one query head per KV group).
// Usage: bench_sparse [--threads N] [--seconds S per measurement, default 0.3] [--quick (4096 x 4096 only)]
//                     [--e2e-only]
#include "core/calibration.h"
#include "core/evaluate.h"
#include "core/kernels/int8linear.h"
#include "core/kernels/sparselinear.h"
#include "core/linear.h"
#include "core/model.h"
#include "core/prune/mask.h"
#include "core/prune/structured.h"
#include "core/quant/quantizer.h"
#include "core/threading.h"
#include "core/transformer.h"

#include <QCoreApplication>
#include <QStringList>
#include <QTemporaryDir>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

using namespace bitsmith::core;

namespace {

using Clock = std::chrono::steady_clock;
double g_seconds = 0.3;

double timeCalls(const LinearKernel &k, const std::vector<float> &x, std::int64_t m, std::vector<float> &y)
{
    k.forward(x.data(), m, y.data());
    std::vector<double> times;
    const auto start = Clock::now();
    while (times.size() < 3 || (std::chrono::duration<double>(Clock::now() - start).count() < g_seconds && times.size() < 2000)) {
        const auto t0 = Clock::now();
        k.forward(x.data(), m, y.data());
        times.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
    }
    std::nth_element(times.begin(), times.begin() + static_cast<std::ptrdiff_t>(times.size() / 2), times.end());
    return times[times.size() / 2];
}

void benchShape(std::int64_t n, std::int64_t k, bool withInt8)
{
    std::mt19937 rng(1);
    std::normal_distribution<float> normal(0.0f, 0.02f);
    std::vector<float> dense(static_cast<std::size_t>(n * k));
    for (auto &v : dense)
        v = normal(rng);
    const MatrixView view{dense.data(), n, k};
    const auto scores = magnitudeScores(view);
    auto mask24 = selectMask(scores, n, k, 0, SparsityPattern{2, 4}, MaskScope::Row);
    const std::vector<float> w24 = applyMask(view, *mask24);
    auto s24 = Sparse24Weights::fromDense(MatrixView{w24.data(), n, k});
    if (!s24) {
        std::fprintf(stderr, "%s\n", qPrintable(s24.error().toString()));
        std::exit(1);
    }
    auto dense32 = makeDenseLinear(view, {});
    auto k24 = makeSparse24Linear(std::make_shared<const Sparse24Weights>(std::move(*s24)), nullptr);
    auto k24i8 = makeSparse24Linear(std::make_shared<const Sparse24Weights>(*Sparse24Weights::fromDense(MatrixView{w24.data(), n, k}, true)), nullptr);
    std::unique_ptr<LinearKernel> int8;
    if (withInt8) {
        QuantizedTensor q;
        q.rows = n;
        q.cols = k;
        q.format = QuantFormat{8, 0, true};
        q.codes.resize(dense.size());
        q.scales.assign(static_cast<std::size_t>(n), 0.001f);
        std::uniform_int_distribution<int> code(100, 156);
        for (auto &c : q.codes)
            c = static_cast<std::uint8_t>(code(rng));
        if (auto kk = makeInt8Linear(q, nullptr); kk)
            int8 = std::move(*kk);
    }
    struct Csr
    {
        double sparsity;
        std::unique_ptr<LinearKernel> kernel;
    };
    std::vector<Csr> csr;
    for (double s : {0.5, 0.7, 0.9}) {
        auto mask = selectMask(scores, n, k, s, {}, MaskScope::Layer);
        const std::vector<float> w = applyMask(view, *mask);
        auto c = CsrWeights::fromDense(MatrixView{w.data(), n, k});
        csr.push_back({s, makeCsrLinear(std::make_shared<const CsrWeights>(std::move(*c)), nullptr)});
    }
    std::printf("\nN x K = %lld x %lld   (%s, %s)\n", static_cast<long long>(n), static_cast<long long>(k),
                qPrintable(k24->description()), qPrintable(csr.front().kernel->description()));
    std::printf("%5s %10s %10s %10s %11s %10s %10s %10s   %s\n", "M", "f32 ms", "int8 ms", "2:4 ms", "2:4 i8 ms", "csr50 ms",
                "csr70 ms", "csr90 ms", "speed-up over f32: int8 / 2:4 / csr50 / csr70 / csr90;  2:4 int8 over int8");
    for (std::int64_t m : {1, 2, 4, 8, 64}) {
        std::vector<float> x(static_cast<std::size_t>(m * k));
        for (auto &v : x)
            v = normal(rng) * 50.0f;
        std::vector<float> y(static_cast<std::size_t>(m * n));
        const double tDense = timeCalls(*dense32, x, m, y);
        const double tInt8 = int8 ? timeCalls(*int8, x, m, y) : NAN;
        const double t24 = timeCalls(*k24, x, m, y);
        const double t24i8 = timeCalls(*k24i8, x, m, y);
        double tc[3];
        for (int i = 0; i < 3; ++i)
            tc[i] = timeCalls(*csr[static_cast<std::size_t>(i)].kernel, x, m, y);
        std::printf("%5lld %10.3f %10.3f %10.3f %11.3f %10.3f %10.3f %10.3f   %.2fx / %.2fx / %.2fx / %.2fx / %.2fx;  %.2fx\n",
                    static_cast<long long>(m), 1e3 * tDense, 1e3 * tInt8, 1e3 * t24, 1e3 * t24i8, 1e3 * tc[0], 1e3 * tc[1], 1e3 * tc[2],
                    tDense / tInt8, tDense / t24, tDense / tc[0], tDense / tc[1], tDense / tc[2], tInt8 / t24i8);
    }
}

struct Speed
{
    double eval = 0, decode = 0;
};

Speed measure(std::shared_ptr<const Model> model, const std::vector<std::int32_t> &ids, int decodeTokens)
{
    Transformer tf(std::move(model));
    EvalOptions opt;
    opt.ctx = 256;
    opt.maxWindows = 8;
    EvalOptions warm = opt;
    warm.maxWindows = 1;
    (void)evaluatePerplexity(tf, ids, warm);
    Speed s;
    if (auto r = evaluatePerplexity(tf, ids, opt); r)
        s.eval = r->tokensPerSecond;
    KVCache cache = tf.makeCache(decodeTokens + 1);
    std::vector<float> logits;
    const std::int32_t first[1] = {ids[0]};
    (void)tf.forward(first, cache, logits, true);
    // best of 3 runs of decodeTokens steps (the host is shared)
    double best = 0;
    for (int rep = 0; rep < 3; ++rep) {
        cache.length = 1;
        const auto t0 = Clock::now();
        for (int i = 0; i < decodeTokens; ++i) {
            const std::int32_t one[1] = {ids[static_cast<std::size_t>(i + 1)]};
            (void)tf.forward(one, cache, logits, true);
        }
        best = std::max(best, decodeTokens / std::chrono::duration<double>(Clock::now() - t0).count());
    }
    s.decode = best;
    return s;
}

std::shared_ptr<Model> magnitudePruned(const Model &m, double sparsity, SparsityPattern pattern)
{
    auto copy = m.cloneMutable();
    for (const WeightInfo &w : m.weights()) {
        if (!isLinearRole(w.role) || w.role == WeightRole::LmHead)
            continue;
        const MatrixView v = m.weight(w.name);
        auto mask = selectMask(magnitudeScores(v), v.rows, v.cols, sparsity, pattern, MaskScope::Row);
        (void)copy->setPruned(w.name, applyMask(v, *mask));
    }
    return copy;
}

} // namespace

int main(int argc, char **argv)
{
    prepareProcessEnvironment(argc, argv);
    QCoreApplication app(argc, argv);
    const QStringList args = app.arguments();
    int threads = 1;
    bool quick = false, e2eOnly = false;
    for (int i = 1; i < args.size(); ++i) {
        if (args[i] == QLatin1String("--threads") && i + 1 < args.size())
            threads = args[++i].toInt();
        else if (args[i] == QLatin1String("--seconds") && i + 1 < args.size())
            g_seconds = args[++i].toDouble();
        else if (args[i] == QLatin1String("--quick"))
            quick = true;
        else if (args[i] == QLatin1String("--e2e-only"))
            e2eOnly = true;
    }
    setThreadCount(threads);
    std::printf("bench_sparse: %d thread(s), ISA %s\n", threads, kernelIsaName(selectKernelIsa()));
    if (!e2eOnly)
        benchShape(4096, 4096, true);
    if (!quick && !e2eOnly) {
        benchShape(11008, 4096, true);
        benchShape(4096, 11008, true);
    }

    auto model = Model::load(QStringLiteral("default"));
    if (!model) {
        std::fprintf(stderr, "%s\n", qPrintable(model.error().toString()));
        return 1;
    }
    auto ids = tokenizeTextFile(**model, (*model)->folder() + QStringLiteral("/eval.txt"));
    auto calibIds = tokenizeTextFile(**model, (*model)->folder() + QStringLiteral("/calib.txt"));
    if (!ids || !calibIds)
        return 1;
    const int decode = 200;
    std::printf("\nbundled model, end to end (eval: ctx 256, 8 windows; decode: %d tokens; best of 3 rounds)\n", decode);
    std::printf("%-52s %12s %12s %10s %10s\n", "model", "eval tok/s", "decode tok/s", "eval x", "decode x");
    // Every configuration is measured 3 times, round robin, keeping the best (the host is shared).
    struct Config
    {
        std::string name;
        std::shared_ptr<const Model> model;
        bool sparseKernels = true;
        Speed best;
    };
    std::vector<Config> configs;
    configs.push_back({"dense bf16 -> f32 (baseline)", *model, true, {}});
    auto p50 = magnitudePruned(**model, 0.5, {});
    auto p24 = magnitudePruned(**model, 0.0, SparsityPattern{2, 4});
    configs.push_back({"50% unstructured (runtime choice)", p50, true, {}});
    configs.push_back({"2:4 on the 2:4 kernel", p24, true, {}});
    configs.push_back({"2:4 on dense kernels (BITSMITH_SPARSE=0)", p24, false, {}});
    // 2:4 + 8-bit symmetric per-channel (RTN of the pruned weights: zeros stay zeros)
    auto p24q8 = p24->cloneMutable();
    for (const WeightInfo &w : p24->weights()) {
        if (!isLinearRole(w.role) || w.role == WeightRole::LmHead)
            continue;
        if (auto q = quantizeRtn(p24->weight(w.name), QuantFormat{8, 0, true}); q)
            (void)p24q8->setQuantized(w.name, std::move(*q), Execution::WeightOnly);
    }
    configs.push_back({"2:4 + int8 on the int8 2:4 kernel", p24q8, true, {}});
    configs.push_back({"2:4 + int8 on the packed int8 kernel", p24q8, false, {}});
    configs.push_back({"90% unstructured on CSR", magnitudePruned(**model, 0.9, {}), true, {}});

    auto calib = makeCalibrationSequences(*calibIds, 16, 256, 0);
    auto imp = structuredImportance(*model, *calib);
    QTemporaryDir dir;
    int index = 0;
    for (auto [heads, mlp, name] : {std::tuple{0.0, 0.25, "structured: 25% of MLP neurons"},
                                    std::tuple{0.5, 0.0, "structured: 50% of heads (1 per KV group)"},
                                    std::tuple{0.5, 0.25, "structured: 50% heads + 25% MLP"}}) {
        auto plan = planStructuredPruning(**model, *imp, heads, mlp);
        const QString out = dir.filePath(QStringLiteral("s%1").arg(index++));
        if (!plan || !writeStructuredModel(**model, *plan, out))
            return 1;
        auto small = Model::load(out);
        if (!small)
            return 1;
        const double kept = static_cast<double>((*small)->totalParameters()) / static_cast<double>((*model)->totalParameters());
        char label[96];
        std::snprintf(label, sizeof label, "%s (%.1f%% params)", name, 100.0 * kept);
        configs.push_back({label, *small, true, {}});
    }
    for (int rep = 0; rep < 3; ++rep)
        for (Config &c : configs) {
            if (!c.sparseKernels)
                qputenv("BITSMITH_SPARSE", "0");
            const Speed s = measure(c.model, *ids, decode);
            qunsetenv("BITSMITH_SPARSE");
            c.best.eval = std::max(c.best.eval, s.eval);
            c.best.decode = std::max(c.best.decode, s.decode);
        }
    const Speed base = configs.front().best;
    for (const Config &c : configs)
        std::printf("%-52s %12.1f %12.1f %9.2fx %9.2fx\n", c.name.c_str(), c.best.eval, c.best.decode, c.best.eval / base.eval,
                    c.best.decode / base.decode);
    return 0;
}

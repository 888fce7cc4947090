// bench_kernels: speed of the quantized linear kernels against the dense oneDNN f32 kernel,
// measured in the same run, one thread by default: time per call, GFLOP/s (GOP/s for int8),
// effective weight bandwidth and the speed-up over f32 for M in {1, 16, 128, 512} and
// K = N in {1024, 2048, 4096}; int2/int3 at M = 1 (decoding). Also estimates the int8 peak
// (register-only VNNI loop, and a large M = N = K = 4096 int8 matmul) and the share reached.
// Usage: bench_kernels [--threads N] [--seconds S (per measurement, default 0.25)]
#include "core/kernels/int8linear.h"
#include "core/kernels/packedlinear.h"
#include "core/kernels/packedweights.h"
#include "core/linear.h"
#include "core/threading.h"

#include <QCoreApplication>
#include <QStringList>

#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <vector>

using namespace bitsmith::core;

namespace {

using Clock = std::chrono::steady_clock;

double g_seconds = 0.25;

// Median seconds per call: one warm-up call (primitive creation, first-touch of scratch), then
// calls until g_seconds have passed (at least 3).
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

QuantizedTensor randomTensor(std::int64_t rows, std::int64_t cols, QuantFormat f, std::mt19937 &rng)
{
    QuantizedTensor t;
    t.rows = rows;
    t.cols = cols;
    t.format = f;
    t.codes.resize(static_cast<std::size_t>(rows * cols));
    std::uniform_int_distribution<int> code(0, f.maxCode());
    if (f.bits == 8 && f.symmetric) {
        std::normal_distribution<float> d(0.0f, 40.0f);
        for (auto &c : t.codes)
            c = static_cast<std::uint8_t>(std::clamp(128 + static_cast<int>(d(rng)), 0, 255));
    } else {
        for (auto &c : t.codes)
            c = static_cast<std::uint8_t>(code(rng));
    }
    const std::int64_t groups = t.groupsPerRow();
    std::uniform_real_distribution<float> s(0.002f, 0.02f);
    for (std::int64_t i = 0; i < rows * groups; ++i) {
        t.scales.push_back(s(rng));
        t.zeros.push_back(f.symmetric ? static_cast<float>(1 << (f.bits - 1)) : static_cast<float>(code(rng)));
    }
    return t;
}

// Bytes a kernel streams per call for its weights (codes + scales/zeros as held in memory).
double packedBytes(const PackedWeights &w)
{
    return static_cast<double>(w.packedCodes().size()) + 4.0 * static_cast<double>(w.scales().size() + w.zeros().size());
}

struct Row
{
    QString kernel;
    double seconds = 0;
    double weightBytes = 0;
};

void printRow(std::int64_t kn, std::int64_t m, const Row &r, double f32Seconds, bool ops)
{
    const double flop = 2.0 * static_cast<double>(m) * static_cast<double>(kn) * static_cast<double>(kn);
    std::printf("%5lld %4lld  %-34s %10.3f %9.1f %-5s %9.1f %8.2fx\n", static_cast<long long>(kn), static_cast<long long>(m),
                qPrintable(r.kernel), r.seconds * 1e3, flop / r.seconds * 1e-9, ops ? "GOP/s" : "GFLOP", r.weightBytes / r.seconds * 1e-9,
                f32Seconds / r.seconds);
}

// Register-only loops for the hardware peak of one thread: 12 independent accumulators in named
// variables (an array ends up on the stack, and the stores then bound the loop), so throughput,
// not latency, bounds them. The empty asm keeps the loop from being folded away.
#define BITSMITH_PEAK_LOOP(type, zero, op)                                                                            \
    type c0 = zero, c1 = zero, c2 = zero, c3 = zero, c4 = zero, c5 = zero, c6 = zero, c7 = zero, c8 = zero, c9 = zero, \
         c10 = zero, c11 = zero;                                                                                       \
    const long iters = 20'000'000;                                                                                     \
    const auto t0 = Clock::now();                                                                                      \
    for (long i = 0; i < iters; ++i) {                                                                                 \
        c0 = op(c0); c1 = op(c1); c2 = op(c2); c3 = op(c3); c4 = op(c4); c5 = op(c5);                                  \
        c6 = op(c6); c7 = op(c7); c8 = op(c8); c9 = op(c9); c10 = op(c10); c11 = op(c11);                              \
        __asm__ volatile("" : "+v"(c0), "+v"(c1), "+v"(c2), "+v"(c3), "+v"(c4), "+v"(c5), "+v"(c6), "+v"(c7),         \
                         "+v"(c8), "+v"(c9), "+v"(c10), "+v"(c11));                                                    \
    }                                                                                                                  \
    const double sec = std::chrono::duration<double>(Clock::now() - t0).count();

__attribute__((target("avx512f,avx512vnni"))) double vnniPeakGops()
{
    const __m512i a = _mm512_set1_epi8(1), b = _mm512_set1_epi8(2);
    auto op = [&](__m512i c) __attribute__((target("avx512f,avx512vnni"))) { return _mm512_dpbusd_epi32(c, a, b); };
    BITSMITH_PEAK_LOOP(__m512i, _mm512_setzero_si512(), op)
    return static_cast<double>(iters) * 12 * 64 * 2 / sec * 1e-9; // 64 u8*s8 MACs per instruction
}

__attribute__((target("avx512f,fma"))) double fmaPeakGflops()
{
    const __m512 a = _mm512_set1_ps(1.0001f), b = _mm512_set1_ps(0.9999f);
    auto op = [&](__m512 c) __attribute__((target("avx512f,fma"))) { return _mm512_fmadd_ps(a, b, c); };
    BITSMITH_PEAK_LOOP(__m512, _mm512_setzero_ps(), op)
    return static_cast<double>(iters) * 12 * 16 * 2 / sec * 1e-9;
}
#undef BITSMITH_PEAK_LOOP

} // namespace

int main(int argc, char **argv)
{
    prepareProcessEnvironment(argc, argv);
    QCoreApplication app(argc, argv);
    int threads = 1;
    const QStringList args = app.arguments();
    for (int i = 1; i + 1 < args.size(); ++i) {
        if (args[i] == QLatin1String("--threads"))
            threads = args[i + 1].toInt();
        else if (args[i] == QLatin1String("--seconds"))
            g_seconds = args[i + 1].toDouble();
    }
    setThreadCount(threads);
    const auto benchStart = Clock::now();

    std::printf("bench_kernels: %d thread(s), median of >= %.2f s per measurement, packed kernels use %s\n", threadCount(),
                g_seconds, kernelIsaName(selectKernelIsa()));
    std::printf("  GEMV path for M <= %lld, dequantized tiles + oneDNN f32 above; speed-up = f32 time / kernel time\n\n",
                static_cast<long long>(kPackedGemvMaxRows));

    double vnniPeak = 0, fmaPeak = 0;
    if (kernelIsaSupported(KernelIsa::Avx512)) {
        vnniPeak = vnniPeakGops();
        fmaPeak = fmaPeakGflops();
    }

    std::mt19937 rng(42);
    struct Int8Point
    {
        std::int64_t kn, m;
        double gops;
    };
    std::vector<Int8Point> int8Points;
    QString int8Impl;
    std::vector<std::pair<std::int64_t, double>> m1Speedups; // (K, int4 speed-up at M = 1)

    std::printf("%5s %4s  %-34s %10s %15s %9s %9s\n", "K=N", "M", "kernel", "ms/call", "throughput", "wGB/s", "vs f32");
    for (std::int64_t kn : {1024, 2048, 4096}) {
        // int4 g128 (asym) weights; the f32 baseline runs on their dequantized values.
        const QuantizedTensor q4 = randomTensor(kn, kn, QuantFormat{4, 128, false}, rng);
        std::vector<float> wf(static_cast<std::size_t>(kn * kn));
        q4.dequantize(wf.data());
        auto dense = makeDenseLinear(MatrixView{wf.data(), kn, kn}, MatrixView{});
        auto p4 = std::make_shared<const PackedWeights>(*PackedWeights::pack(q4));
        auto int4 = makePackedLinear(p4, nullptr);
        const QuantizedTensor q8 = randomTensor(kn, kn, QuantFormat{8, 0, true}, rng);
        auto int8 = Int8Linear::create(q8, nullptr);
        if (!int8) {
            std::fprintf(stderr, "%s\n", qPrintable(int8.error().toString()));
            return 1;
        }
        auto p2 = std::make_shared<const PackedWeights>(*PackedWeights::pack(randomTensor(kn, kn, QuantFormat{2, 64, false}, rng)));
        auto p3 = std::make_shared<const PackedWeights>(*PackedWeights::pack(randomTensor(kn, kn, QuantFormat{3, 64, false}, rng)));
        auto int2 = makePackedLinear(p2, nullptr);
        auto int3 = makePackedLinear(p3, nullptr);

        for (std::int64_t m : {1, 16, 128, 512}) {
            std::normal_distribution<float> d(0.0f, 1.0f);
            std::vector<float> x(static_cast<std::size_t>(m * kn));
            for (auto &v : x)
                v = d(rng);
            std::vector<float> y(static_cast<std::size_t>(m * kn));

            const double f32 = timeCalls(*dense, x, m, y);
            printRow(kn, m, Row{dense->description(), f32, 4.0 * static_cast<double>(kn * kn)}, f32, false);
            const double t8 = timeCalls(**int8, x, m, y);
            int8Impl = (*int8)->implementation(m);
            printRow(kn, m, Row{QStringLiteral("int8 w8a8 (%1)").arg(int8Impl), t8, static_cast<double>(kn * kn) + 4.0 * kn}, f32, true);
            int8Points.push_back({kn, m, 2.0 * m * kn * kn / t8 * 1e-9});
            const double t4 = timeCalls(*int4, x, m, y);
            printRow(kn, m, Row{int4->description(), t4, packedBytes(*p4)}, f32, false);
            if (m == 1) {
                m1Speedups.emplace_back(kn, f32 / t4);
                printRow(kn, m, Row{int3->description(), timeCalls(*int3, x, m, y), packedBytes(*p3)}, f32, false);
                printRow(kn, m, Row{int2->description(), timeCalls(*int2, x, m, y), packedBytes(*p2)}, f32, false);
            }
        }
        std::printf("\n");
    }

    // The int8 peak this library reaches: a large square matmul.
    double largeGops = 0;
    {
        const std::int64_t n = 4096;
        const QuantizedTensor q8 = randomTensor(n, n, QuantFormat{8, 0, true}, rng);
        auto int8 = Int8Linear::create(q8, nullptr);
        std::vector<float> x(static_cast<std::size_t>(n * n), 0.5f), y(static_cast<std::size_t>(n * n));
        std::normal_distribution<float> d(0.0f, 1.0f);
        for (auto &v : x)
            v = d(rng);
        const double t = timeCalls(**int8, x, n, y);
        largeGops = 2.0 * n * n * n / t * 1e-9;
        std::printf("int8 peak estimate: M=N=K=4096 int8 matmul (%s) %.1f GOP/s (%.0f ms)\n",
                    qPrintable((*int8)->implementation(n)), largeGops, t * 1e3);
    }
    if (vnniPeak > 0)
        std::printf("hardware peak (register-only loops, 1 thread): vpdpbusd zmm %.1f GOP/s, f32 FMA zmm %.1f GFLOP/s\n",
                    vnniPeak, fmaPeak);
    std::printf("\nint8 share of peak (large-M matmul / register-only VNNI loop):\n");
    for (const auto &p : int8Points)
        if (p.m >= 128)
            std::printf("  K=N=%-5lld M=%-4lld %7.1f GOP/s  %5.1f%% of M=N=K=4096  %5.1f%% of vpdpbusd loop\n",
                        static_cast<long long>(p.kn), static_cast<long long>(p.m), p.gops, 100.0 * p.gops / largeGops,
                        vnniPeak > 0 ? 100.0 * p.gops / vnniPeak : 0.0);
    std::printf("\nM=1 (decode) speed-up of packed int4 g128 over oneDNN f32:");
    for (const auto &[k, s] : m1Speedups)
        std::printf("  K=N=%lld: %.2fx", static_cast<long long>(k), s);
    std::printf("\ntotal bench time %.1f s\n", std::chrono::duration<double>(Clock::now() - benchStart).count());
    return 0;
}

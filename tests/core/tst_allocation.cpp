// tst_allocation: the bit-allocation solver. The DP against brute force on small random
// instances (integer sizes, so the discretisation is exact), the granularity bound on
// non-integer sizes, greedy never better than the DP, the min-size mode, infeasible budgets, and
// a monotone frontier.
#include "core/allocation.h"

#include <QTest>

#include <cmath>
#include <functional>
#include <random>

using namespace bitsmith::core;

namespace {

std::vector<AllocationLayer> randomInstance(std::mt19937 &rng, bool integral)
{
    std::uniform_int_distribution<int> nl(3, 6), no(2, 4), sz(1, 60);
    std::uniform_real_distribution<double> lossD(0.0, 1.0), frac(0.0, 1.0);
    std::vector<AllocationLayer> layers(static_cast<std::size_t>(nl(rng)));
    int i = 0;
    for (AllocationLayer &l : layers) {
        l.name = QStringLiteral("layer%1").arg(i++);
        l.parameters = 64;
        const int n = no(rng);
        for (int k = 0; k < n; ++k) {
            double b = sz(rng);
            if (!integral)
                b += frac(rng);
            l.options.push_back({QStringLiteral("o%1").arg(k), b, lossD(rng)});
        }
    }
    return layers;
}

// Best loss with Σ bytes <= budget by enumeration (inf when infeasible), and the smallest size
// reaching a loss <= maxLoss.
void bruteForce(const std::vector<AllocationLayer> &layers, double budget, double *bestLoss,
                double maxLoss = 0, double *minSize = nullptr)
{
    *bestLoss = INFINITY;
    if (minSize)
        *minSize = INFINITY;
    std::function<void(std::size_t, double, double)> rec = [&](std::size_t l, double bytes, double loss) {
        if (l == layers.size()) {
            if (bytes <= budget + 1e-9)
                *bestLoss = std::min(*bestLoss, loss);
            if (minSize && loss <= maxLoss + 1e-12)
                *minSize = std::min(*minSize, bytes);
            return;
        }
        for (const AllocationOption &o : layers[l].options)
            rec(l + 1, bytes + o.bytes, loss + o.loss);
    };
    rec(0, 0, 0);
}

double minBytes(const std::vector<AllocationLayer> &layers)
{
    double s = 0;
    for (const AllocationLayer &l : layers) {
        double m = INFINITY;
        for (const AllocationOption &o : l.options)
            m = std::min(m, o.bytes);
        s += m;
    }
    return s;
}

double maxBytes(const std::vector<AllocationLayer> &layers)
{
    double s = 0;
    for (const AllocationLayer &l : layers) {
        double m = 0;
        for (const AllocationOption &o : l.options)
            m = std::max(m, o.bytes);
        s += m;
    }
    return s;
}

} // namespace

class TestAllocation : public QObject
{
    Q_OBJECT

private slots:
    void dpEqualsBruteForce()
    {
        std::mt19937 rng(1234);
        for (int inst = 0; inst < 200; ++inst) {
            const auto layers = randomInstance(rng, true);
            const double lo = minBytes(layers), hi = maxBytes(layers);
            std::uniform_int_distribution<int> bd(static_cast<int>(lo), static_cast<int>(hi) + 5);
            const double budget = bd(rng);
            double best = 0;
            bruteForce(layers, budget, &best);
            auto dp = allocateExact(layers, budget);
            QVERIFY2(dp.has_value(), qPrintable(dp ? QString() : dp.error().toString()));
            // Whole-byte sizes: the unit is their common divisor, and the DP is exact.
            QVERIFY(dp->unitBytes >= 1.0 && dp->unitBytes == std::floor(dp->unitBytes));
            QVERIFY2(std::abs(dp->loss - best) < 1e-9, qPrintable(QStringLiteral("instance %1: dp %2 brute %3")
                                                                       .arg(inst).arg(dp->loss).arg(best)));
            QVERIFY(dp->bytes <= budget);
            // The reported totals are those of the choice.
            const AllocationResult check = evaluateChoice(layers, dp->choice);
            QCOMPARE(check.bytes, dp->bytes);
            QVERIFY(std::abs(check.loss - dp->loss) < 1e-12);

            auto greedy = allocateGreedy(layers, budget);
            QVERIFY(greedy.has_value());
            QVERIFY(greedy->bytes <= budget);
            QVERIFY2(greedy->loss >= dp->loss - 1e-12, qPrintable(QStringLiteral("greedy beat the DP at %1").arg(inst)));

            // Min-size mode: the smallest size whose loss is within a random threshold.
            std::uniform_real_distribution<double> t(0.0, 1.0);
            double bestAll = 0;
            bruteForce(layers, hi, &bestAll);
            const double maxLoss = bestAll + t(rng) * layers.size() * 0.5;
            double dummy = 0, minSize = 0;
            bruteForce(layers, hi, &dummy, maxLoss, &minSize);
            auto ms = allocateMinSize(layers, maxLoss);
            QVERIFY(ms.has_value());
            QVERIFY(ms->loss <= maxLoss + 1e-9);
            QCOMPARE(ms->bytes, minSize);
        }
    }

    void granularityBound()
    {
        // Non-integer sizes with a coarse grid: the DP's allocation fits and is no worse than the
        // true optimum for budget - layers * unit.
        std::mt19937 rng(99);
        for (int inst = 0; inst < 100; ++inst) {
            const auto layers = randomInstance(rng, false);
            std::uniform_real_distribution<double> bd(minBytes(layers), maxBytes(layers));
            const double budget = bd(rng);
            AllocationSolverOptions opt;
            opt.units = 16;
            auto dp = allocateExact(layers, budget, opt);
            QVERIFY(dp.has_value());
            QVERIFY(dp->bytes <= budget + 1e-9);
            double best = 0, bestReduced = 0;
            bruteForce(layers, budget, &best);
            bruteForce(layers, budget - layers.size() * dp->unitBytes, &bestReduced);
            QVERIFY(dp->loss >= best - 1e-12);
            QVERIFY(dp->loss <= bestReduced + 1e-12);
        }
    }

    // Sizes that are multiples of 64 bytes with an extra budget far above `units` bytes: the DP
    // counts in 64-byte units and is still exact (against brute force).
    void commonDivisorUnit()
    {
        std::mt19937 rng(7);
        for (int inst = 0; inst < 50; ++inst) {
            auto layers = randomInstance(rng, true);
            for (AllocationLayer &l : layers)
                for (AllocationOption &o : l.options)
                    o.bytes *= 64;
            std::uniform_int_distribution<int> bd(static_cast<int>(minBytes(layers)), static_cast<int>(maxBytes(layers)));
            const double budget = bd(rng);
            AllocationSolverOptions opt;
            opt.units = static_cast<int>((maxBytes(layers) - minBytes(layers)) / 64) + 1;
            double best = 0;
            bruteForce(layers, budget, &best);
            auto dp = allocateExact(layers, budget, opt);
            QVERIFY(dp.has_value());
            QVERIFY(std::fmod(dp->unitBytes, 64.0) == 0.0);
            QVERIFY2(std::abs(dp->loss - best) < 1e-9, qPrintable(QStringLiteral("instance %1").arg(inst)));
            QVERIFY(dp->bytes <= budget);
        }
    }

    void infeasible()
    {
        std::vector<AllocationLayer> layers(2);
        layers[0] = {QStringLiteral("a"), 10, {{QStringLiteral("w2"), 100, 1.0}, {QStringLiteral("w8"), 400, 0.0}}};
        layers[1] = {QStringLiteral("b"), 10, {{QStringLiteral("w2"), 50, 1.0}, {QStringLiteral("w8"), 200, 0.0}}};
        auto r = allocateExact(layers, 149);
        QVERIFY(!r.has_value());
        QCOMPARE(r.error().code, ErrorCode::InvalidArgument);
        QCOMPARE(r.error().parameter, QStringLiteral("maxBytes"));
        QVERIFY(r.error().message.contains(QStringLiteral("150")));
        QVERIFY(!allocateGreedy(layers, 149).has_value());
        QVERIFY(allocateExact(layers, 150).has_value());
        auto m = allocateMinSize(layers, -0.5);
        QVERIFY(!m.has_value());
        QCOMPARE(m.error().parameter, QStringLiteral("maxLossIncrease"));
        QVERIFY(!allocateExact({}, 100).has_value());
        std::vector<AllocationLayer> noOptions(1);
        noOptions[0].name = QStringLiteral("x");
        auto e = allocateExact(noOptions, 100);
        QVERIFY(!e.has_value());
        QCOMPARE(e.error().layer, QStringLiteral("x"));
        // Target bits per weight: 20 parameters at 4 bpw = 10 bytes.
        QCOMPARE(bytesForBitsPerWeight(layers, 4.0), 10.0);
    }

    void frontierMonotone()
    {
        std::mt19937 rng(7);
        for (int inst = 0; inst < 50; ++inst) {
            const auto layers = randomInstance(rng, true);
            auto f = allocationFrontier(layers);
            QVERIFY(f.has_value());
            QVERIFY(!f->empty());
            for (std::size_t i = 1; i < f->size(); ++i) {
                QVERIFY((*f)[i].bytes > (*f)[i - 1].bytes);
                QVERIFY((*f)[i].loss < (*f)[i - 1].loss);
            }
            // Each point is optimal at its own size, and the ends are the cheapest / best.
            for (const FrontierPoint &p : *f) {
                double best = 0;
                bruteForce(layers, p.bytes, &best);
                QVERIFY(std::abs(best - p.loss) < 1e-9);
            }
            double bestAll = 0;
            bruteForce(layers, maxBytes(layers), &bestAll);
            QVERIFY(std::abs(f->back().loss - bestAll) < 1e-9);
            QCOMPARE(f->front().bytes, minBytes(layers)); // the cheapest allocation first
            auto thin = allocationFrontier(layers, 3);
            QVERIFY(thin.has_value());
            QVERIFY(thin->size() <= 3);
        }
    }
};

QTEST_GUILESS_MAIN(TestAllocation)
#include "tst_allocation.moc"

// allocation.cpp: the multiple-choice knapsack DP, the greedy baseline and the frontier sweep
// (see allocation.h for the discretisation and its error bound).
#include "core/allocation.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <limits>

namespace bitsmith::core {

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

Expected<void> validateLayers(const std::vector<AllocationLayer> &layers)
{
    if (layers.empty())
        return unexpected(fail(ErrorCode::InvalidArgument, QStringLiteral("no layers to allocate"))
                              .forParameter(QStringLiteral("layers")));
    for (const AllocationLayer &l : layers) {
        if (l.options.empty())
            return unexpected(fail(ErrorCode::InvalidArgument, QStringLiteral("layer has no candidate options"))
                                  .forLayer(l.name).forParameter(QStringLiteral("layers")));
        if (l.options.size() > 32767)
            return unexpected(fail(ErrorCode::InvalidArgument, QStringLiteral("too many options for one layer"))
                                  .forLayer(l.name).forParameter(QStringLiteral("layers")));
        for (const AllocationOption &o : l.options)
            if (!std::isfinite(o.bytes) || o.bytes < 0 || !std::isfinite(o.loss))
                return unexpected(fail(ErrorCode::InvalidArgument,
                                       QStringLiteral("option '%1' has a negative or non-finite size or loss").arg(o.label))
                                      .forLayer(l.name).forParameter(QStringLiteral("layers")));
    }
    return {};
}

// Index of the cheapest option (ties: the lower loss).
int cheapestOption(const AllocationLayer &l)
{
    int best = 0;
    for (int k = 1; k < static_cast<int>(l.options.size()); ++k) {
        const AllocationOption &o = l.options[static_cast<std::size_t>(k)];
        const AllocationOption &b = l.options[static_cast<std::size_t>(best)];
        if (o.bytes < b.bytes || (o.bytes == b.bytes && o.loss < b.loss))
            best = k;
    }
    return best;
}

double minimumBytes(const std::vector<AllocationLayer> &layers)
{
    double s = 0;
    for (const AllocationLayer &l : layers)
        s += l.options[static_cast<std::size_t>(cheapestOption(l))].bytes;
    return s;
}

std::int64_t totalParameters(const std::vector<AllocationLayer> &layers)
{
    std::int64_t p = 0;
    for (const AllocationLayer &l : layers)
        p += l.parameters;
    return p;
}

// The DP over `extraBudget` bytes above the all-cheapest allocation. best[c] = the smallest loss
// with at most c units of extra cost; arg[l][c] the option layer l takes there.
struct Dp
{
    double unit = 1;
    int budgetUnits = 0;
    std::vector<std::vector<int>> cost; // [layer][option] in units (> budgetUnits: unusable)
    std::vector<double> best;           // size budgetUnits + 1
    std::vector<std::int16_t> arg;      // layers x (budgetUnits + 1)

    std::vector<int> reconstruct(int c) const
    {
        const std::size_t width = static_cast<std::size_t>(budgetUnits) + 1;
        std::vector<int> choice(cost.size(), 0);
        for (std::size_t l = cost.size(); l-- > 0;) {
            const int k = arg[l * width + static_cast<std::size_t>(c)];
            choice[l] = k;
            c -= cost[l][static_cast<std::size_t>(k)];
        }
        return choice;
    }
};

Dp runDp(const std::vector<AllocationLayer> &layers, double extraBudget, int units)
{
    if (units == 0)
        units = static_cast<int>(std::clamp<std::int64_t>(64'000'000 / std::max<std::int64_t>(1, static_cast<std::int64_t>(layers.size())),
                                                          16384, 4'000'000));
    Dp dp;
    bool integral = true;
    std::vector<double> base(layers.size());
    for (std::size_t l = 0; l < layers.size(); ++l) {
        base[l] = layers[l].options[static_cast<std::size_t>(cheapestOption(layers[l]))].bytes;
        for (const AllocationOption &o : layers[l].options)
            integral = integral && o.bytes - base[l] == std::floor(o.bytes - base[l]);
    }
    // Whole-byte sizes share a common divisor (a row of packed codes, a group's scales): in units
    // of it the table is smaller, and still exact.
    std::int64_t divisor = 0;
    if (integral)
        for (std::size_t l = 0; l < layers.size(); ++l)
            for (const AllocationOption &o : layers[l].options)
                divisor = std::gcd(divisor, static_cast<std::int64_t>(o.bytes - base[l]));
    if (divisor < 1)
        divisor = 1;
    if (extraBudget <= 0) {
        dp.unit = 1;
        dp.budgetUnits = 0;
    } else if (integral && extraBudget / static_cast<double>(divisor) <= units) {
        dp.unit = static_cast<double>(divisor);
        dp.budgetUnits = static_cast<int>(std::floor(extraBudget / static_cast<double>(divisor) + 1e-9));
    } else {
        dp.unit = extraBudget / units;
        dp.budgetUnits = units;
    }
    dp.cost.resize(layers.size());
    for (std::size_t l = 0; l < layers.size(); ++l)
        for (const AllocationOption &o : layers[l].options) {
            const double extra = o.bytes - base[l];
            int c = 0;
            if (extra > 0) {
                const double u = std::ceil(extra / dp.unit);
                c = u > dp.budgetUnits ? dp.budgetUnits + 1 : static_cast<int>(u);
            }
            dp.cost[l].push_back(c);
        }

    const std::size_t width = static_cast<std::size_t>(dp.budgetUnits) + 1;
    std::vector<double> prev(width, 0.0), cur(width);
    dp.arg.assign(layers.size() * width, 0);
    for (std::size_t l = 0; l < layers.size(); ++l) {
        std::int16_t *arg = dp.arg.data() + l * width;
        for (std::size_t c = 0; c < width; ++c) {
            double bestLoss = kInf;
            std::int16_t bestK = 0;
            for (std::size_t k = 0; k < layers[l].options.size(); ++k) {
                const int ck = dp.cost[l][k];
                if (static_cast<std::size_t>(ck) > c)
                    continue;
                const double v = prev[c - static_cast<std::size_t>(ck)] + layers[l].options[k].loss;
                if (v < bestLoss) {
                    bestLoss = v;
                    bestK = static_cast<std::int16_t>(k);
                }
            }
            cur[c] = bestLoss;
            arg[c] = bestK;
        }
        std::swap(prev, cur);
    }
    dp.best = std::move(prev);
    return dp;
}

// Σ over layers of the most expensive option's extra bytes above the cheapest.
double maximumExtra(const std::vector<AllocationLayer> &layers)
{
    double s = 0;
    for (const AllocationLayer &l : layers) {
        const double base = l.options[static_cast<std::size_t>(cheapestOption(l))].bytes;
        double mx = base;
        for (const AllocationOption &o : l.options)
            mx = std::max(mx, o.bytes);
        s += mx - base;
    }
    return s;
}

Expected<void> validateUnits(const AllocationSolverOptions &options)
{
    if (options.units < 0 || options.units > 50'000'000)
        return unexpected(fail(ErrorCode::InvalidArgument, QStringLiteral("units must be in 0..50000000 (0 = automatic), got %1").arg(options.units))
                              .forParameter(QStringLiteral("units")));
    return {};
}

} // namespace

double bytesForBitsPerWeight(const std::vector<AllocationLayer> &layers, double bitsPerWeight)
{
    return bitsPerWeight * static_cast<double>(totalParameters(layers)) / 8.0;
}

AllocationResult evaluateChoice(const std::vector<AllocationLayer> &layers, std::vector<int> choice)
{
    AllocationResult r;
    for (std::size_t l = 0; l < layers.size() && l < choice.size(); ++l) {
        const AllocationOption &o = layers[l].options[static_cast<std::size_t>(choice[l])];
        r.bytes += o.bytes;
        r.loss += o.loss;
    }
    const std::int64_t p = totalParameters(layers);
    r.bitsPerWeight = p > 0 ? 8.0 * r.bytes / static_cast<double>(p) : 0.0;
    r.choice = std::move(choice);
    return r;
}

Expected<AllocationResult> allocateExact(const std::vector<AllocationLayer> &layers, double maxBytes,
                                         const AllocationSolverOptions &options)
{
    if (auto ok = validateLayers(layers); !ok)
        return unexpected(ok.error());
    if (auto ok = validateUnits(options); !ok)
        return unexpected(ok.error());
    const double minBytes = minimumBytes(layers);
    if (!std::isfinite(maxBytes) || maxBytes < minBytes)
        return unexpected(fail(ErrorCode::InvalidArgument,
                               QStringLiteral("budget of %1 bytes is below the smallest possible size, %2 bytes "
                                              "(every layer at its cheapest setting)")
                                   .arg(maxBytes, 0, 'f', 0).arg(minBytes, 0, 'f', 0))
                              .forParameter(QStringLiteral("maxBytes"))
                              .withHint(QStringLiteral("raise the budget or add cheaper candidate settings")));
    // Never discretise more budget than can be spent: a finer unit for the same table.
    const double extra = std::min(maxBytes - minBytes, maximumExtra(layers));
    const Dp dp = runDp(layers, extra, options.units);
    AllocationResult r = evaluateChoice(layers, dp.reconstruct(dp.budgetUnits));
    r.unitBytes = dp.unit;
    return r;
}

Expected<AllocationResult> allocateGreedy(const std::vector<AllocationLayer> &layers, double maxBytes)
{
    if (auto ok = validateLayers(layers); !ok)
        return unexpected(ok.error());
    const double minBytes = minimumBytes(layers);
    if (!std::isfinite(maxBytes) || maxBytes < minBytes)
        return unexpected(fail(ErrorCode::InvalidArgument,
                               QStringLiteral("budget of %1 bytes is below the smallest possible size, %2 bytes")
                                   .arg(maxBytes, 0, 'f', 0).arg(minBytes, 0, 'f', 0))
                              .forParameter(QStringLiteral("maxBytes")));
    std::vector<int> choice(layers.size());
    double total = 0;
    for (std::size_t l = 0; l < layers.size(); ++l) {
        choice[l] = cheapestOption(layers[l]);
        total += layers[l].options[static_cast<std::size_t>(choice[l])].bytes;
    }
    for (;;) {
        double bestRatio = 0;
        int bestL = -1, bestK = -1;
        for (std::size_t l = 0; l < layers.size(); ++l) {
            const AllocationOption &cur = layers[l].options[static_cast<std::size_t>(choice[l])];
            for (std::size_t k = 0; k < layers[l].options.size(); ++k) {
                const AllocationOption &o = layers[l].options[k];
                const double gain = cur.loss - o.loss;
                const double extra = o.bytes - cur.bytes;
                if (gain <= 0 || total + extra > maxBytes)
                    continue;
                // A free upgrade (no extra bytes) ranks above any paid one, the larger gain first.
                const double ratio = extra <= 0 ? 1e300 + gain : gain / extra;
                if (bestL < 0 || ratio > bestRatio) {
                    bestRatio = ratio;
                    bestL = static_cast<int>(l);
                    bestK = static_cast<int>(k);
                }
            }
        }
        if (bestL < 0)
            break;
        total += layers[static_cast<std::size_t>(bestL)].options[static_cast<std::size_t>(bestK)].bytes
                 - layers[static_cast<std::size_t>(bestL)].options[static_cast<std::size_t>(choice[static_cast<std::size_t>(bestL)])].bytes;
        choice[static_cast<std::size_t>(bestL)] = bestK;
    }
    return evaluateChoice(layers, std::move(choice));
}

Expected<AllocationResult> allocateMinSize(const std::vector<AllocationLayer> &layers, double maxLossIncrease,
                                           const AllocationSolverOptions &options)
{
    if (auto ok = validateLayers(layers); !ok)
        return unexpected(ok.error());
    if (auto ok = validateUnits(options); !ok)
        return unexpected(ok.error());
    const Dp dp = runDp(layers, maximumExtra(layers), options.units);
    const double bestLoss = dp.best.back();
    // A relative tolerance so that asking for exactly the best achievable loss succeeds.
    const double tol = 1e-12 * std::max(1.0, std::abs(maxLossIncrease));
    if (!std::isfinite(maxLossIncrease) || bestLoss > maxLossIncrease + tol)
        return unexpected(fail(ErrorCode::InvalidArgument,
                               QStringLiteral("no allocation predicts a loss increase of at most %1; the best "
                                              "possible is %2")
                                   .arg(maxLossIncrease, 0, 'g', 6).arg(bestLoss, 0, 'g', 6))
                              .forParameter(QStringLiteral("maxLossIncrease"))
                              .withHint(QStringLiteral("allow a larger loss increase or add more precise candidate settings")));
    int c = 0;
    while (dp.best[static_cast<std::size_t>(c)] > maxLossIncrease + tol)
        ++c;
    AllocationResult r = evaluateChoice(layers, dp.reconstruct(c));
    r.unitBytes = dp.unit;
    return r;
}

Expected<std::vector<FrontierPoint>> allocationFrontier(const std::vector<AllocationLayer> &layers, int maxPoints,
                                                        const AllocationSolverOptions &options)
{
    if (auto ok = validateLayers(layers); !ok)
        return unexpected(ok.error());
    if (auto ok = validateUnits(options); !ok)
        return unexpected(ok.error());
    const Dp dp = runDp(layers, maximumExtra(layers), options.units);
    std::vector<FrontierPoint> points;
    for (int c = 0; c <= dp.budgetUnits; ++c) {
        if (c > 0 && !(dp.best[static_cast<std::size_t>(c)] < dp.best[static_cast<std::size_t>(c - 1)]))
            continue;
        AllocationResult r = evaluateChoice(layers, dp.reconstruct(c));
        points.push_back({r.bytes, r.loss, r.bitsPerWeight, std::move(r.choice)});
    }
    // Real sizes of reconstructions need not follow the unit order exactly: keep the Pareto set.
    std::stable_sort(points.begin(), points.end(),
                     [](const FrontierPoint &a, const FrontierPoint &b) {
                         return a.bytes < b.bytes || (a.bytes == b.bytes && a.loss < b.loss);
                     });
    std::vector<FrontierPoint> pareto;
    for (FrontierPoint &p : points)
        if (pareto.empty() || (p.loss < pareto.back().loss && p.bytes > pareto.back().bytes))
            pareto.push_back(std::move(p));
    if (maxPoints > 1 && static_cast<int>(pareto.size()) > maxPoints) {
        std::vector<FrontierPoint> thin;
        const double step = static_cast<double>(pareto.size() - 1) / (maxPoints - 1);
        for (int i = 0; i < maxPoints; ++i)
            thin.push_back(pareto[static_cast<std::size_t>(std::llround(i * step))]);
        pareto = std::move(thin);
    }
    return pareto;
}

} // namespace bitsmith::core

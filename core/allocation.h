// allocation.h: choosing one compression setting per layer so that the predicted loss increase
// (the sum of the per-layer sensitivities) is smallest under a size budget — the discrete
// "multiple-choice knapsack" problem — and the accuracy-vs-size Pareto frontier it implies.
//
// Exact solver: dynamic programming over a discretised budget. Each layer's cheapest option is
// taken as its base; what an option costs above that base ("extra bytes") is rounded UP to
// whole budget units, so every allocation the DP returns really fits the budget. Rounding up
// loses at most one unit per layer, hence the granularity bound: the DP's allocation is at least
// as good as the true optimum for the budget  maxBytes − layers × unitBytes  (AllocationResult::
// unitBytes reports the unit). When all extra bytes are integers and the extra budget is at most
// AllocationSolverOptions::units units of their greatest common divisor, that divisor is the unit
// and the result is exactly optimal.
// Greedy baseline: start from the cheapest option of every layer, then repeatedly take the
// upgrade (any option of any layer that lowers its loss) with the best loss decrease per extra
// byte that still fits.
#pragma once

#include "core/error.h" // Expected

#include <QString>

#include <cstdint>
#include <vector>

namespace bitsmith::core {

// One candidate setting of one layer.
struct AllocationOption
{
    QString label;     // e.g. "rtn:w4g128"
    double bytes = 0;  // storage of the layer under this setting (>= 0)
    double loss = 0;   // predicted loss increase when only this layer uses this setting
};

struct AllocationLayer
{
    QString name;
    std::int64_t parameters = 0; // weights in the layer (for bits per weight)
    std::vector<AllocationOption> options; // at least one
};

struct AllocationSolverOptions
{
    // Budget units of the DP (memory 2 × layers × units bytes, time layers × units × options).
    // 0 = automatic: as many as 64 M table entries allow (at least 16384, at most 4 M), so real
    // models' sizes in units of their common divisor fit and the result is exact.
    int units = 0;
};

struct AllocationResult
{
    std::vector<int> choice; // per layer, the index of the chosen option
    double bytes = 0;        // Σ bytes of the chosen options
    double loss = 0;         // Σ predicted loss of the chosen options
    double bitsPerWeight = 0; // 8 · bytes / Σ parameters
    double unitBytes = 0;    // the DP's budget unit (0 for greedy): granularity, see above
};

struct FrontierPoint
{
    double bytes = 0;
    double loss = 0;
    double bitsPerWeight = 0;
    std::vector<int> choice;
};

// The byte budget that corresponds to `bitsPerWeight` effective bits over all layers' weights.
double bytesForBitsPerWeight(const std::vector<AllocationLayer> &layers, double bitsPerWeight);

// Sum of bytes / loss of a choice, with bits per weight (no checks beyond the indices).
AllocationResult evaluateChoice(const std::vector<AllocationLayer> &layers, std::vector<int> choice);

// Minimum predicted loss with Σ bytes <= maxBytes (exact up to the granularity bound above).
// Errors: InvalidArgument ("layers": empty list or a layer without options / negative bytes;
// "units"), and InvalidArgument naming "maxBytes" when even the cheapest allocation does not fit
// (the message gives the smallest possible size).
Expected<AllocationResult> allocateExact(const std::vector<AllocationLayer> &layers, double maxBytes,
                                         const AllocationSolverOptions &options = {});

// The greedy baseline under the same budget; same errors.
Expected<AllocationResult> allocateGreedy(const std::vector<AllocationLayer> &layers, double maxBytes);

// Smallest size whose predicted loss is <= maxLossIncrease (sizes discretised as above: the
// result may exceed the true minimum by at most layers × unitBytes). Error naming
// "maxLossIncrease" when even the best (most expensive) allocation predicts a larger loss.
Expected<AllocationResult> allocateMinSize(const std::vector<AllocationLayer> &layers,
                                           double maxLossIncrease,
                                           const AllocationSolverOptions &options = {});

// The Pareto frontier of predicted loss vs size from the cheapest to the best allocation: one DP
// over the full range, every budget unit reconstructed, only non-dominated points kept (sizes
// strictly increasing, losses strictly decreasing). `maxPoints` > 0 thins the curve to about
// that many points (keeping both ends).
Expected<std::vector<FrontierPoint>> allocationFrontier(const std::vector<AllocationLayer> &layers,
                                                        int maxPoints = 0,
                                                        const AllocationSolverOptions &options = {});

} // namespace bitsmith::core

// random.h: splitmix64, the small well-defined generator behind every seeded choice in Bitsmith
// (sampling, calibration windows, reservoirs), so a seed gives the same result on every platform.
#pragma once

#include <cstdint>

namespace bitsmith::core {

inline std::uint64_t splitmix64(std::uint64_t &state)
{
    std::uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

// Uniform in [0, 1) with 53 random bits.
inline double uniform01(std::uint64_t &state)
{
    return static_cast<double>(splitmix64(state) >> 11) * (1.0 / 9007199254740992.0);
}

} // namespace bitsmith::core

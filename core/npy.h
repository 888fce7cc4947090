// npy.h: writing NumPy .npy arrays (float32, C order), atomically.
#pragma once

#include "error.h"

#include <QString>

#include <cstdint>
#include <span>
#include <vector>

namespace bitsmith::core {

Expected<void> writeNpyF32(const QString &path, std::span<const float> data, const std::vector<std::int64_t> &shape);

} // namespace bitsmith::core

// formatting.h: how numbers, sizes and shapes are spelled in the user interface, in one place so
// that the table, the summary and the status bar agree ("1,234,567", "4.50 MiB", "768 × 3072").
#pragma once

#include <QString>

#include <cstdint>
#include <vector>

namespace bitsmith::ui {

// Exact count with thousands separators: 1234567 -> "1,234,567". Independent of the system
// locale so that screenshots and tests read the same everywhere.
QString formatCount(std::int64_t n);

// Short count for tight places: 1234567 -> "1.23 M", 40960 -> "41.0 K", 512 -> "512".
QString formatCompactCount(std::int64_t n);

// Byte size in binary units: 512 -> "512 B", 4718592 -> "4.50 MiB".
QString formatBytes(std::int64_t bytes);

// Tensor shape as rows × columns: {768, 3072} -> "768 × 3072", {64} -> "64", {} -> "scalar".
QString formatShape(const std::vector<std::int64_t> &shape);

} // namespace bitsmith::ui

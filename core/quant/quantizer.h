// quantizer.h: the scalar b-bit quantizer that every weight quantizer in Bitsmith shares (RTN,
// GPTQ, AWQ, SmoothQuant): how the scale and zero point of a group of weights are chosen, how one
// weight becomes a code, and round-to-nearest (RTN) quantization of a whole matrix.
//
// Definitions (REFERENCE.md; the GPTQ reference quantizer), maxq = 2^bits - 1:
//   asymmetric: xmin = min(min w, 0), xmax = max(max w, 0),
//               scale = (xmax - xmin) / maxq, zero = round(-xmin / scale)
//   symmetric:  xmax = max(|xmin|, xmax), xmin = -xmax, zero = (maxq + 1) / 2 = 2^(bits-1)
//   xmin == xmax == 0 (an all-zero group): the range [-1, 1] is used instead
//   q  = clamp(round(w / scale) + zero, 0, maxq)
//   w' = scale * (q - zero)
//   optional MSE grid search: the range [xmin, xmax] is shrunk by p = 1 - i/100, i = 0..79 (the
//   GPTQ reference's grid = 100, maxshrink = 0.8: 1.0 down to 0.21), keeping the p whose
//   sum |w' - w|^2.4 is smallest (the first one on ties).
//
// Bitsmith's own conventions (tools/quant_reference.py follows them too):
//   - The scale is rounded to fp16 as soon as it is computed, because that is how it is stored
//     and counted (QuantizedTensor::storageBits). The zero point and the codes are computed
//     with the rounded scale, so (codes, scales, zeros) reproduce exactly the dequantized
//     weights an algorithm worked with (GPTQ feeds that exact error back). A scale that rounds
//     to fp16 zero becomes the smallest fp16 subnormal (2^-24); one above fp16's range 65504.
//   - round() is round-half-to-even (torch.round), i.e. std::nearbyint, not std::round.
//   - Symmetric with no negative weight: the GPTQ repository only mirrors a negative xmin, so
//     an all-positive row keeps xmin = 0 and loses half its codes; we always use xmin = -xmax
//     as REFERENCE.md defines it.
//   - All arithmetic of a single weight is in float (as the PyTorch references do), so codes
//     agree bit for bit with them; only the MSE search sums its error in double.
#pragma once

#include "core/error.h"                 // Expected, fail
#include "core/model.h"                 // MatrixView
#include "core/quant/quantizedtensor.h" // QuantFormat, QuantizedTensor

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace bitsmith::core {

// Scale and zero point of one group (zero is integer-valued, in [0, maxq]).
struct QuantParams
{
    float scale = 1.0f;
    float zero = 0.0f;
};

// InvalidArgument naming "bits" (outside 2..8) or "group" (group size below -1).
Expected<void> validateFormat(const QuantFormat &format);

// InvalidArgument naming the first NaN/Inf entry of `m`; `what` says which matrix ("weights").
Expected<void> requireFinite(MatrixView m, const QString &what);

// The fp16 value a scale is stored as (see above for the zero / overflow guards).
float toStoredScale(float scale);

// Scale and zero point for the n weights at `w` (finite; n >= 1) under `format`'s bits and
// symmetry (its group size is the caller's business). mseSearch adds the shrink grid search.
QuantParams findParams(const float *w, std::int64_t n, const QuantFormat &format, bool mseSearch);

// One weight's code: clamp(round(w / scale) + zero, 0, maxq), all in float.
inline std::uint8_t quantizeCode(float w, QuantParams p, int maxq)
{
    const float q = std::nearbyint(w / p.scale) + p.zero;
    return static_cast<std::uint8_t>(std::clamp(q, 0.0f, static_cast<float>(maxq)));
}

// The weight a code stands for: scale * (q - zero).
inline float dequantizeCode(std::uint8_t q, QuantParams p)
{
    return p.scale * (static_cast<float>(q) - p.zero);
}

// Round-to-nearest quantization of a [rows, cols] row-major matrix: per tensor, per output row
// or per (row, group of format.groupSize columns; the last group may be shorter).
// `clip` (optional, rows * groupsPerRow() values, e.g. from awqSearchClip) clamps the weights of
// each (row, group) to [-clip, clip] before its parameters and codes are computed; for per-tensor
// formats there is one clip value per row and the tensor-wide parameters see the clamped rows.
// Errors: InvalidArgument for a bad format (parameter "bits" / "group") or a NaN/Inf weight.
Expected<QuantizedTensor> quantizeRtn(MatrixView w, const QuantFormat &format, bool mseSearch = false,
                                      const float *clip = nullptr);

} // namespace bitsmith::core

// A read-only weight matrix in PyTorch [out, in] row-major layout, kept in its checkpoint dtype.
#pragma once

#include <cstdint>

#include "kernels/dtype.h"

namespace quarry {

struct MatrixView {
  const void* data = nullptr;  // [rows, cols], row-major, contiguous
  DType dtype = DType::kF32;
  int64_t rows = 0;            // output features
  int64_t cols = 0;            // input features

  // Rows [begin, begin + count) as their own matrix (e.g. one expert of a stacked [E*out, in] tensor).
  MatrixView SliceRows(int64_t begin, int64_t count) const {
    MatrixView v = *this;
    v.data = static_cast<const char*>(data) + begin * cols * static_cast<int64_t>(DTypeSize(dtype));
    v.rows = count;
    return v;
  }
  int64_t bytes() const { return rows * cols * static_cast<int64_t>(DTypeSize(dtype)); }
};

// Element (r, c) as float (reference / slow paths only).
float MatrixAt(const MatrixView& m, int64_t r, int64_t c);

}  // namespace quarry

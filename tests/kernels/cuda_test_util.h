// Shared helpers of the CUDA parity tests: device buffers, device weight matrices, tolerance checks and the
// fixture that skips without a GPU.
#pragma once

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "gtest/gtest.h"
#include "tests/kernels/test_util.h"

namespace quarry::testing {

// Device copy of a host vector; Download() copies it back.
template <typename T>
class DeviceBuffer {
 public:
  explicit DeviceBuffer(const std::vector<T>& host) : size_(host.size()) {
    EXPECT_EQ(cudaMalloc(&ptr_, Bytes() + 1), cudaSuccess);  // +1: never a zero-byte allocation
    EXPECT_EQ(cudaMemcpy(ptr_, host.data(), Bytes(), cudaMemcpyHostToDevice), cudaSuccess);
  }
  ~DeviceBuffer() { cudaFree(ptr_); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  T* get() const { return static_cast<T*>(ptr_); }
  std::vector<T> Download() const {
    std::vector<T> host(size_);
    EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    EXPECT_EQ(cudaMemcpy(host.data(), ptr_, Bytes(), cudaMemcpyDeviceToHost), cudaSuccess);
    return host;
  }

 private:
  size_t Bytes() const { return size_ * sizeof(T); }
  void* ptr_ = nullptr;
  size_t size_;
};

// Device copy of a weight matrix in its dtype.
struct DeviceMatrix {
  explicit DeviceMatrix(const OwnedMatrix& m)
      : bytes(m.view.dtype == DType::kF32 ? std::vector<uint8_t>(reinterpret_cast<const uint8_t*>(m.f32.data()),
                                                                 reinterpret_cast<const uint8_t*>(m.f32.data()) +
                                                                     m.f32.size() * 4)
                                          : std::vector<uint8_t>(reinterpret_cast<const uint8_t*>(m.half.data()),
                                                                 reinterpret_cast<const uint8_t*>(m.half.data()) +
                                                                     m.half.size() * 2)),
        buf(bytes),
        view(m.view) {
    view.data = buf.get();
  }
  std::vector<uint8_t> bytes;
  DeviceBuffer<uint8_t> buf;
  MatrixView view;
};

// |gpu - cpu| <= rel * max(1, |cpu|) elementwise, and no NaN.
inline void ExpectClose(const std::vector<float>& gpu, const std::vector<float>& cpu, double rel, const char* what) {
  ASSERT_EQ(gpu.size(), cpu.size()) << what;
  EXPECT_FALSE(AnyNan(gpu)) << what;
  for (size_t i = 0; i < gpu.size(); ++i) {
    ASSERT_NEAR(gpu[i], cpu[i], rel * std::max(1.0, std::fabs(double(cpu[i])))) << what << " at " << i;
  }
}

// The work items (kernel launches, copies, memsets) `issue(stream)` puts on a stream, counted by capturing them into
// a CUDA graph (nothing runs); -1 when the capture fails or `issue` returns an error. For checks that a fusion
// really saves its launch.
template <typename Issue>
int64_t LaunchesOf(Issue&& issue) {
  cudaStream_t stream = nullptr;
  if (cudaStreamCreate(&stream) != cudaSuccess) return -1;
  cudaGraph_t graph = nullptr;
  int64_t n = -1;
  if (cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal) == cudaSuccess) {
    const bool ok = issue(stream).ok();
    if (cudaStreamEndCapture(stream, &graph) == cudaSuccess && ok) {
      size_t count = 0;
      if (cudaGraphGetNodes(graph, nullptr, &count) == cudaSuccess) n = static_cast<int64_t>(count);
    }
  }
  if (graph != nullptr) cudaGraphDestroy(graph);
  cudaStreamDestroy(stream);
  cudaGetLastError();
  return n;
}

class CudaParityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
      cudaGetLastError();  // clear the sticky "no device" error
      GTEST_SKIP() << "no CUDA device";
    }
  }
};

}  // namespace quarry::testing

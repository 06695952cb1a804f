// NCCL backend on one GPU: world size 1 all-reduce (sum/max, int64/float), all-to-all-v (self send/recv with
// gaps), all-gather, broadcast and barrier through NCCL. Skips where there is no GPU.
#include "worker/parallel/nccl_communicator.h"

#include <cuda_runtime.h>

#include <cstring>
#include <vector>

#include "gtest/gtest.h"

namespace quarry {
namespace {

bool HaveGpu() {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}

template <typename T>
T* ToDevice(const std::vector<T>& host) {
  T* d = nullptr;
  EXPECT_EQ(cudaMalloc(reinterpret_cast<void**>(&d), std::max<size_t>(1, host.size()) * sizeof(T)), cudaSuccess);
  if (!host.empty()) {
    EXPECT_EQ(cudaMemcpy(d, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice), cudaSuccess);
  }
  return d;
}

template <typename T>
std::vector<T> ToHost(const T* d, size_t n) {
  std::vector<T> host(n);
  if (n > 0) {
    EXPECT_EQ(cudaMemcpy(host.data(), d, n * sizeof(T), cudaMemcpyDeviceToHost), cudaSuccess);
  }
  return host;
}

TEST(NcclCommunicator, WorldSizeOneAllReduceAndAllToAllV) {
  if (!HaveGpu()) GTEST_SKIP() << "no CUDA device";
  GroupConfig config;  // world size 1, no rendezvous needed
  config.timeout = std::chrono::milliseconds(20000);
  auto comm = CreateNcclCommunicator(config, 0);
  ASSERT_TRUE(comm.ok()) << comm.status();
  Communicator& c = **comm;
  EXPECT_EQ(c.rank(), 0);
  EXPECT_EQ(c.world_size(), 1);

  std::vector<int64_t> iv = {1, -2, 3, 1LL << 40};
  int64_t* di = ToDevice(iv);
  ASSERT_TRUE(c.AllReduceSum(std::span<int64_t>(di, iv.size())).ok());
  EXPECT_EQ(ToHost(di, iv.size()), iv);
  ASSERT_TRUE(c.AllReduceMax(std::span<int64_t>(di, iv.size())).ok());
  EXPECT_EQ(ToHost(di, iv.size()), iv);
  std::vector<float> fv = {0.5f, 1.25f, -3.0f};
  float* df = ToDevice(fv);
  ASSERT_TRUE(c.AllReduceSum(std::span<float>(df, fv.size())).ok());
  EXPECT_EQ(ToHost(df, fv.size()), fv);

  // All-to-all-v to itself at offsets with gaps.
  std::vector<uint8_t> send(64);
  for (size_t i = 0; i < send.size(); ++i) send[i] = static_cast<uint8_t>(i * 7 + 3);
  std::vector<uint8_t> recv(64, 0xEE);
  uint8_t* ds = ToDevice(send);
  uint8_t* dr = ToDevice(recv);
  std::vector<int64_t> sc = {40}, so = {5}, rc = {40}, ro = {11};
  ASSERT_TRUE(c.AllToAllV(ds, sc, so, dr, rc, ro).ok());
  auto got = ToHost(dr, recv.size());
  for (size_t i = 0; i < got.size(); ++i) {
    const uint8_t want = (i >= 11 && i < 51) ? send[i - 11 + 5] : 0xEE;
    ASSERT_EQ(got[i], want) << i;
  }
  std::vector<int64_t> zero = {0};
  EXPECT_TRUE(c.AllToAllV(ds, zero, zero, dr, zero, zero).ok());

  int64_t* dout = ToDevice(std::vector<int64_t>(iv.size(), 0));
  ASSERT_TRUE(c.AllGather(std::span<const int64_t>(di, iv.size()), std::span<int64_t>(dout, iv.size())).ok());
  EXPECT_EQ(ToHost(dout, iv.size()), iv);
  ASSERT_TRUE(c.Broadcast(std::span<uint8_t>(ds, send.size()), 0).ok());
  EXPECT_EQ(ToHost(ds, send.size()), send);
  EXPECT_TRUE(c.Barrier().ok());
  EXPECT_EQ(c.Broadcast(std::span<uint8_t>(ds, 1), 1).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(c.healthy());
  for (void* p : {static_cast<void*>(di), static_cast<void*>(df), static_cast<void*>(ds), static_cast<void*>(dr),
                  static_cast<void*>(dout)}) {
    cudaFree(p);
  }
}

TEST(NcclCommunicator, NoGpuIsAnErrorNotACrash) {
  if (HaveGpu()) GTEST_SKIP() << "has a GPU";
  GroupConfig config;
  EXPECT_EQ(CreateNcclCommunicator(config, 0).status().code(), absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace quarry

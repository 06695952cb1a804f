// Communicator backends: LocalCommunicator (threads) and Gloo (forked processes on loopback, file store and
// TCP store), the same collective checks on both, plus timeouts and a rank killed with SIGKILL.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "tests/parallel/collective_checks.h"
#include "tests/parallel/test_util.h"
#include "worker/parallel/communicator.h"
#include "worker/parallel/gloo_communicator.h"
#include "worker/parallel/local_communicator.h"

namespace quarry {
namespace {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;
using testing::RunCollectiveChecks;

// Runs body(rank, comm) on one thread per rank of a fresh local group; returns each rank's text.
std::vector<std::string> RunLocal(int n, milliseconds timeout,
                                  const std::function<std::string(int, Communicator&)>& body) {
  auto group = CreateLocalGroup(n, timeout);
  std::vector<std::string> results(n);
  std::vector<std::thread> threads;
  for (int r = 0; r < n; ++r) threads.emplace_back([&, r] { results[r] = body(r, *group[r]); });
  for (auto& t : threads) t.join();
  return results;
}

// ------------------------------------------------------------------------------------------ local group

class LocalGroupTest : public ::testing::TestWithParam<int> {};

TEST_P(LocalGroupTest, CollectivesAgree) {
  const int n = GetParam();
  auto results = RunLocal(n, milliseconds(10000), [&](int r, Communicator& c) {
    if (c.rank() != r || c.world_size() != n) return std::string("rank/world_size wrong");
    return RunCollectiveChecks(c);
  });
  for (int r = 0; r < n; ++r) EXPECT_EQ(results[r], "") << "rank " << r;
}

TEST_P(LocalGroupTest, MissingRankTimesOutEveryoneElse) {
  const int n = GetParam();
  const int skipper = n - 1;
  std::vector<absl::StatusCode> codes(n);
  std::vector<double> seconds(n);
  std::vector<absl::StatusCode> later(n);
  std::vector<char> healthy(n);  // not vector<bool>: ranks write their own element concurrently
  RunLocal(n, milliseconds(300), [&](int r, Communicator& c) {
    EXPECT_TRUE(c.Barrier().ok());
    auto start = Clock::now();
    if (r != skipper) {
      std::vector<int64_t> v = {1, 2};
      codes[r] = c.AllReduceSum(std::span<int64_t>(v)).code();
    } else {
      // Never joins the all-reduce; comes back after the others gave up.
      std::this_thread::sleep_for(milliseconds(600));
      codes[r] = absl::StatusCode::kOk;
    }
    seconds[r] = std::chrono::duration<double>(Clock::now() - start).count();
    later[r] = c.Barrier().code();
    healthy[r] = c.healthy();
    return std::string();
  });
  for (int r = 0; r < n; ++r) {
    if (n == 1) {  // nobody to wait for
      EXPECT_EQ(later[r], absl::StatusCode::kOk);
      continue;
    }
    if (r != skipper) {
      EXPECT_EQ(codes[r], absl::StatusCode::kDeadlineExceeded) << "rank " << r;
      EXPECT_LT(seconds[r], 2.0) << "rank " << r;
    }
    EXPECT_EQ(later[r], absl::StatusCode::kUnavailable) << "rank " << r;
    EXPECT_FALSE(healthy[r]);
  }
}

INSTANTIATE_TEST_SUITE_P(WorldSizes, LocalGroupTest, ::testing::Values(1, 2, 3, 4));

TEST(LocalGroup, MismatchedCallsAreInvalidArgumentEverywhere) {
  auto results = RunLocal(2, milliseconds(5000), [](int r, Communicator& c) {
    absl::Status st;
    if (r == 0) {
      st = c.Barrier();
    } else {
      std::vector<int64_t> v(3);
      st = c.AllReduceMax(std::span<int64_t>(v));
    }
    if (st.code() != absl::StatusCode::kInvalidArgument) return "mismatch gave " + st.ToString();
    // Counts that disagree pairwise: rank 0 sends 3 bytes to rank 1, which expects 2.
    uint8_t send[8] = {}, recv[8] = {};
    std::vector<int64_t> sc = {0, r == 0 ? 3 : 0}, off = {0, 0}, rc = {r == 1 ? 2 : 0, 0};
    st = c.AllToAllV(send, sc, off, recv, rc, off);
    if (st.code() != absl::StatusCode::kInvalidArgument) return "count mismatch gave " + st.ToString();
    // Different sizes for the same all-reduce.
    std::vector<int64_t> v(r + 1);
    st = c.AllReduceSum(std::span<int64_t>(v));
    if (st.code() != absl::StatusCode::kInvalidArgument) return "size mismatch gave " + st.ToString();
    if (!c.healthy() || !c.Barrier().ok()) return std::string("group not usable after argument errors");
    return std::string();
  });
  EXPECT_EQ(results[0], "");
  EXPECT_EQ(results[1], "");
}

TEST(LocalGroup, ManyRoundsStayInStep) {
  // Fast ranks must not overwrite what slow ranks still read (the second barrier of each round).
  auto results = RunLocal(4, milliseconds(10000), [](int r, Communicator& c) {
    for (int round = 0; round < 300; ++round) {
      std::vector<int64_t> v = {r + round};
      if (!c.AllReduceSum(std::span<int64_t>(v)).ok() || v[0] != 6 + 4 * round) return std::string("round failed");
      if (r == round % 4) std::this_thread::yield();
    }
    return std::string();
  });
  for (const auto& s : results) EXPECT_EQ(s, "");
}

// ------------------------------------------------------------------------------------------ gloo

enum class Rendezvous { kFileStore, kTcpStore };

struct GlooCase {
  Rendezvous rendezvous;
  int world_size;
};

std::string CaseName(const ::testing::TestParamInfo<GlooCase>& info) {
  return std::string(info.param.rendezvous == Rendezvous::kFileStore ? "FileStore" : "TcpStore") + "World" +
         std::to_string(info.param.world_size);
}

class GlooTest : public ::testing::TestWithParam<GlooCase> {
 protected:
  void SetUp() override { dir_ = std::make_unique<testing::TempDir>("quarry_gloo_test"); }

  GroupConfig Config(int rank, milliseconds timeout) const {
    GroupConfig config;
    config.rank = rank;
    config.world_size = GetParam().world_size;
    if (GetParam().rendezvous == Rendezvous::kFileStore) {
      config.rendezvous_dir = dir_->path();
    } else {
      config.master_addr = "127.0.0.1";
      config.master_port = port_;
    }
    config.timeout = timeout;
    config.group_name = "test";
    return config;
  }

  std::unique_ptr<testing::TempDir> dir_;
  int port_ = testing::FreeTcpPort();
};

TEST_P(GlooTest, CollectivesAgree) {
  const int n = GetParam().world_size;
  auto results = testing::RunProcesses(n, std::chrono::seconds(40), [&](int rank) -> std::string {
    // Rank 0 comes last: the others wait for its store (TCP) or its keys (files).
    if (rank == 0) std::this_thread::sleep_for(milliseconds(300));
    auto comm = CreateGlooCommunicator(Config(rank, milliseconds(10000)));
    if (!comm.ok()) return "create: " + comm.status().ToString();
    if ((*comm)->rank() != rank || (*comm)->world_size() != n) return "rank/world_size wrong";
    return RunCollectiveChecks(**comm);
  });
  for (int r = 0; r < n; ++r) {
    EXPECT_TRUE(results[r].exited) << "rank " << r << " did not finish: " << results[r].text;
    EXPECT_EQ(results[r].exit_code, 0) << "rank " << r;
    EXPECT_EQ(results[r].text, "") << "rank " << r;
  }
}

// A rank killed with SIGKILL in the middle of a sequence: every other rank's next collective fails (no
// hang) within the timeout plus a few seconds, then the communicator stays broken (UNAVAILABLE at once).
TEST_P(GlooTest, KilledRankFailsOthersWithinTimeout) {
  const int n = GetParam().world_size;
  // TCP store: kill rank 0, which also serves the store; file store: the last rank.
  const int victim = GetParam().rendezvous == Rendezvous::kTcpStore ? 0 : n - 1;
  const milliseconds timeout(2000);
  auto results = testing::RunProcesses(n, std::chrono::seconds(30), [&](int rank) -> std::string {
    auto comm = CreateGlooCommunicator(Config(rank, timeout));
    if (!comm.ok()) return "create: " + comm.status().ToString();
    Communicator& c = **comm;
    for (int round = 0; round < 20; ++round) {
      if (round == 2 && rank == victim) ::kill(::getpid(), SIGKILL);
      auto start = Clock::now();
      std::vector<int64_t> v = {rank, round};
      absl::Status st = c.AllReduceSum(std::span<int64_t>(v));
      if (st.ok()) {
        std::vector<int64_t> counts(n, 8), offsets(n);
        for (int p = 0; p < n; ++p) offsets[p] = 8 * p;
        std::vector<uint8_t> send(8 * n, static_cast<uint8_t>(rank)), recv(8 * n);
        st = c.AllToAllV(send.data(), counts, offsets, recv.data(), counts, offsets);
      }
      const double took = std::chrono::duration<double>(Clock::now() - start).count();
      if (st.ok()) {
        if (round >= 2) return "round " + std::to_string(round) + " succeeded without the victim";
        continue;
      }
      if (round < 2) return "round " + std::to_string(round) + " failed early: " + st.ToString();
      if (st.code() != absl::StatusCode::kDeadlineExceeded && st.code() != absl::StatusCode::kUnavailable) {
        return "unexpected code: " + st.ToString();
      }
      std::fprintf(stderr, "[rank %d, victim %d] %s after %.2f s\n", rank, victim, st.ToString().c_str(), took);
      if (took > 2.0 + 4.0) return "failure took " + std::to_string(took) + " s: " + st.ToString();
      if (c.healthy()) return std::string("healthy() after a failure");
      auto again = Clock::now();
      absl::Status next = c.Barrier();
      if (next.code() != absl::StatusCode::kUnavailable) return "after failure: " + next.ToString();
      if (Clock::now() - again > milliseconds(200)) return std::string("broken communicator did not fail fast");
      return std::string();
    }
    return std::string("never failed");
  });
  for (int r = 0; r < n; ++r) {
    if (r == victim) {
      EXPECT_TRUE(results[r].signaled) << "victim " << r << ": " << results[r].text;
      continue;
    }
    EXPECT_TRUE(results[r].exited) << "rank " << r << " hung: " << results[r].text;
    EXPECT_EQ(results[r].exit_code, 0) << "rank " << r;
    EXPECT_EQ(results[r].text, "") << "rank " << r;
  }
}

INSTANTIATE_TEST_SUITE_P(Loopback, GlooTest,
                         ::testing::Values(GlooCase{Rendezvous::kFileStore, 2}, GlooCase{Rendezvous::kFileStore, 4},
                                           GlooCase{Rendezvous::kTcpStore, 2}, GlooCase{Rendezvous::kTcpStore, 4}),
                         CaseName);

// A peer that dies while this rank streams a large message to it: the send fails with an error (and the
// process is not killed by SIGPIPE: Gloo writes with writev, so CreateGlooCommunicator ignores SIGPIPE).
TEST(Gloo, PeerKilledDuringLargeSend) {
  testing::TempDir dir("quarry_gloo_large");
  auto results = testing::RunProcesses(2, std::chrono::seconds(30), [&](int rank) -> std::string {
    GroupConfig config;
    config.rank = rank;
    config.world_size = 2;
    config.rendezvous_dir = dir.path();
    config.timeout = milliseconds(2000);
    auto comm = CreateGlooCommunicator(config);
    if (!comm.ok()) return "create: " + comm.status().ToString();
    if (!(*comm)->Barrier().ok()) return std::string("barrier");
    if (rank == 1) {
      std::this_thread::sleep_for(milliseconds(200));
      ::kill(::getpid(), SIGKILL);
    }
    const int64_t big = 64 << 20;
    std::vector<uint8_t> send(big, 1), recv(big);
    std::vector<int64_t> counts = {0, big}, offsets = {0, 0};
    for (int i = 0; i < 3; ++i) {
      absl::Status st = (*comm)->AllToAllV(send.data(), counts, offsets, recv.data(), counts, offsets);
      if (st.ok()) return std::string("sent to a dead peer without error");
      std::fprintf(stderr, "[rank %d after peer death] %s\n", rank, st.ToString().c_str());
    }
    return std::string();
  });
  EXPECT_TRUE(results[1].signaled);
  EXPECT_TRUE(results[0].exited) << "survivor died or hung: " << results[0].text;
  EXPECT_EQ(results[0].text, "");
}

TEST(Gloo, StalledRankTimesOutOthers) {
  // The peer stays alive but stops making calls (stuck, not dead): the others see DEADLINE_EXCEEDED.
  testing::TempDir dir("quarry_gloo_stall");
  auto results = testing::RunProcesses(3, std::chrono::seconds(30), [&](int rank) -> std::string {
    GroupConfig config;
    config.rank = rank;
    config.world_size = 3;
    config.rendezvous_dir = dir.path();
    config.timeout = milliseconds(1500);
    auto comm = CreateGlooCommunicator(config);
    if (!comm.ok()) return "create: " + comm.status().ToString();
    if (!(*comm)->Barrier().ok()) return std::string("barrier");
    if (rank == 2) {
      std::this_thread::sleep_for(milliseconds(4000));
      return std::string();
    }
    auto start = Clock::now();
    std::vector<int64_t> v = {1};
    absl::Status st = (*comm)->AllReduceSum(std::span<int64_t>(v));
    const double took = std::chrono::duration<double>(Clock::now() - start).count();
    std::fprintf(stderr, "[rank %d, stalled peer] %s after %.2f s\n", rank, st.ToString().c_str(), took);
    // Stay up a little: a rank that exits closes its connections, and a peer still waiting would then see
    // "connection closed" (UNAVAILABLE) instead of its own timeout.
    std::this_thread::sleep_for(milliseconds(1000));
    if (st.code() != absl::StatusCode::kDeadlineExceeded) return "got " + st.ToString();
    if (took < 1.0 || took > 1.5 + 3.0) return "took " + std::to_string(took) + " s";
    return std::string();
  });
  for (int r = 0; r < 3; ++r) EXPECT_EQ(results[r].text, "") << "rank " << r;
}

TEST(Gloo, WorldSizeOneNeedsNoRendezvous) {
  auto results = testing::RunProcesses(1, std::chrono::seconds(20), [](int) -> std::string {
    GroupConfig config;
    auto comm = CreateGlooCommunicator(config);
    if (!comm.ok()) return "create: " + comm.status().ToString();
    return RunCollectiveChecks(**comm);
  });
  EXPECT_EQ(results[0].exit_code, 0);
  EXPECT_EQ(results[0].text, "");
}

TEST(Gloo, MissingPeerAtRendezvousTimesOut) {
  testing::TempDir dir("quarry_gloo_missing");
  const int port = testing::FreeTcpPort();
  for (bool tcp : {false, true}) {
    auto results = testing::RunProcesses(1, std::chrono::seconds(20), [&](int) -> std::string {
      GroupConfig config;
      config.rank = tcp ? 1 : 0;  // TCP: a non-zero rank whose rank 0 never starts
      config.world_size = 2;
      if (tcp) {
        config.master_addr = "127.0.0.1";
        config.master_port = port;
      } else {
        config.rendezvous_dir = dir.path();
      }
      config.timeout = milliseconds(1000);
      auto start = Clock::now();
      auto comm = CreateGlooCommunicator(config);
      const double took = std::chrono::duration<double>(Clock::now() - start).count();
      if (comm.ok()) return std::string("created a group without its peer");
      if (comm.status().code() != absl::StatusCode::kDeadlineExceeded) return "got " + comm.status().ToString();
      if (took > 1.0 + 4.0) return "took " + std::to_string(took) + " s";
      return std::string();
    });
    EXPECT_EQ(results[0].text, "") << (tcp ? "tcp" : "file");
    EXPECT_EQ(results[0].exit_code, 0) << (tcp ? "tcp" : "file");
  }
}

TEST(Gloo, InvalidConfig) {
  GroupConfig config;
  config.world_size = 2;
  config.rank = 2;
  EXPECT_EQ(CreateGlooCommunicator(config).status().code(), absl::StatusCode::kInvalidArgument);
  config.rank = 1;  // no rendezvous configured
  EXPECT_EQ(CreateGlooCommunicator(config).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(Gloo, ErrorMapping) {
  EXPECT_EQ(GlooErrorToStatus("x", std::runtime_error("[pair.cc:598] Read error: Connection reset")).code(),
            absl::StatusCode::kUnavailable);
  EXPECT_EQ(GlooErrorToStatus("x", std::runtime_error("Timed out waiting 2000ms for recv operation")).code(),
            absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(GlooErrorToStatus("x", std::runtime_error("Wait timeout for key(s): [0]")).code(),
            absl::StatusCode::kDeadlineExceeded);
}

}  // namespace
}  // namespace quarry

// TcpStore / TcpStoreServer: set/get/wait, timeouts, clients that start before the server, server restarts,
// and the rendezvous-store factory.
#include "worker/parallel/tcp_store.h"

#include <chrono>
#include <thread>

#include "gloo/common/error.h"
#include "gtest/gtest.h"
#include "tests/parallel/test_util.h"

namespace quarry {
namespace {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

std::vector<char> Bytes(const std::string& s) { return std::vector<char>(s.begin(), s.end()); }

TEST(TcpStore, SetGetWait) {
  auto server = TcpStoreServer::Start("127.0.0.1", 0);
  ASSERT_TRUE(server.ok()) << server.status();
  TcpStore a("127.0.0.1", (*server)->port(), milliseconds(2000));
  TcpStore b("localhost", (*server)->port(), milliseconds(2000));
  a.set("k1", Bytes("hello"));
  EXPECT_EQ(b.get("k1"), Bytes("hello"));
  std::vector<char> big(200000);
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 31);
  b.set("big", big);
  EXPECT_EQ(a.get("big"), big);
  a.set("empty", {});
  EXPECT_TRUE(b.get("empty").empty());
  a.set("k1", Bytes("again"));  // overwrite
  EXPECT_EQ(b.get("k1"), Bytes("again"));
  // wait() for a key another thread sets later.
  std::thread setter([&] {
    std::this_thread::sleep_for(milliseconds(100));
    TcpStore c("127.0.0.1", (*server)->port(), milliseconds(2000));
    c.set("late", Bytes("x"));
  });
  b.wait({"k1", "late"});
  setter.join();
  EXPECT_EQ(a.get("late"), Bytes("x"));
  EXPECT_EQ((*server)->num_keys(), 4u);
}

TEST(TcpStore, WaitTimesOut) {
  auto server = TcpStoreServer::Start("", 0);
  ASSERT_TRUE(server.ok()) << server.status();
  TcpStore a("127.0.0.1", (*server)->port(), milliseconds(300));
  auto start = Clock::now();
  try {
    a.wait({"never"}, milliseconds(300));
    FAIL() << "wait returned";
  } catch (const gloo::IoException& e) {
    EXPECT_NE(std::string(e.what()).find("timeout"), std::string::npos) << e.what();
  }
  EXPECT_THROW(a.get("never"), gloo::IoException);
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(3));
}

TEST(TcpStore, ClientBeforeServerAndServerRestart) {
  const int port = testing::FreeTcpPort();
  std::unique_ptr<TcpStoreServer> server;
  std::thread starter([&] {
    std::this_thread::sleep_for(milliseconds(300));
    auto s = TcpStoreServer::Start("", port);
    ASSERT_TRUE(s.ok()) << s.status();
    server = *std::move(s);
  });
  TcpStore client("127.0.0.1", port, milliseconds(5000));
  client.set("a", Bytes("1"));  // retries until the server is up
  starter.join();
  EXPECT_EQ(client.get("a"), Bytes("1"));
  // The server goes away and comes back empty: the client reconnects.
  server.reset();
  auto again = TcpStoreServer::Start("", port);
  ASSERT_TRUE(again.ok()) << again.status();
  client.set("b", Bytes("2"));
  EXPECT_EQ(client.get("b"), Bytes("2"));
  EXPECT_EQ((*again)->num_keys(), 1u);
}

TEST(TcpStore, UnreachableServerTimesOut) {
  TcpStore client("127.0.0.1", testing::FreeTcpPort(), milliseconds(400));
  auto start = Clock::now();
  EXPECT_THROW(client.set("a", Bytes("1")), gloo::IoException);
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(3));
}

TEST(TcpStore, PortInUseIsUnavailable) {
  auto first = TcpStoreServer::Start("", 0);
  ASSERT_TRUE(first.ok());
  auto second = TcpStoreServer::Start("", (*first)->port());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable);
}

TEST(RendezvousStore, KindsAndPrefix) {
  testing::TempDir dir("quarry_rdv");
  GroupConfig config;
  config.world_size = 2;
  EXPECT_EQ(RendezvousStore::Create(config).status().code(), absl::StatusCode::kInvalidArgument);
  config.world_size = 1;
  auto mem = RendezvousStore::Create(config);
  ASSERT_TRUE(mem.ok()) << mem.status();
  (*mem)->store().set("k", Bytes("v"));
  EXPECT_EQ((*mem)->store().get("k"), Bytes("v"));

  config.world_size = 2;
  config.rendezvous_dir = dir.path() + "/sub";  // created when missing
  config.group_name = "g1";
  auto files = RendezvousStore::Create(config);
  ASSERT_TRUE(files.ok()) << files.status();
  (*files)->store().set("k", Bytes("v"));
  EXPECT_EQ((*files)->store().get("k"), Bytes("v"));

  config.rendezvous_dir.clear();
  config.master_addr = "127.0.0.1";
  config.master_port = testing::FreeTcpPort();
  config.rank = 0;
  auto rank0 = RendezvousStore::Create(config);
  ASSERT_TRUE(rank0.ok()) << rank0.status();
  ASSERT_NE((*rank0)->server(), nullptr);
  config.rank = 1;
  auto rank1 = RendezvousStore::Create(config);
  ASSERT_TRUE(rank1.ok()) << rank1.status();
  EXPECT_EQ((*rank1)->server(), nullptr);
  (*rank0)->store().set("k", Bytes("from0"));
  EXPECT_EQ((*rank1)->store().get("k"), Bytes("from0"));
  // Another group on the same store does not see the key (prefix).
  config.group_name = "g2";
  auto other = RendezvousStore::Create(config);
  ASSERT_TRUE(other.ok());
  EXPECT_THROW((*other)->store().wait({"k"}, milliseconds(100)), gloo::IoException);
}

}  // namespace
}  // namespace quarry

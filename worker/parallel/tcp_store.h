// Rendezvous key-value store for groups whose ranks share no directory (Kubernetes): rank 0 serves the keys
// over TCP (TcpStoreServer), every rank (rank 0 included) is a TcpStore client implementing Gloo's
// rendezvous::Store. Clients retry the connection with backoff until their timeout, so rank 0 may start
// after the others. Also the factory for whichever store a GroupConfig names (shared by Gloo and NCCL).
//
// Wire protocol (both directions little-endian u32 lengths): request = u8 op, u32 n, n x (u32 len, bytes);
// reply = u8 ok, u32 len, bytes. Ops: SET(key, value) -> ok; GET(key) -> ok=1 + value or ok=0 when absent;
// CHECK(key...) -> ok=1 when every key is present. Waiting is done by the client (CHECK with backoff).
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "gloo/rendezvous/store.h"
#include "worker/parallel/communicator.h"

namespace quarry {

// The key-value server: one thread polling the listening socket and its connections. Keys live as long as
// the server (a recreated group on a new server starts empty).
class TcpStoreServer {
 public:
  // bind_host empty: all interfaces (IPv6 dual-stack when available, else IPv4). port 0: an ephemeral port.
  static absl::StatusOr<std::unique_ptr<TcpStoreServer>> Start(const std::string& bind_host, int port);
  ~TcpStoreServer();
  TcpStoreServer(const TcpStoreServer&) = delete;
  TcpStoreServer& operator=(const TcpStoreServer&) = delete;

  int port() const { return port_; }
  size_t num_keys() const;

 private:
  TcpStoreServer(int listen_fd, int wake_fd, int port);
  void Loop();

  const int listen_fd_;
  const int wake_fd_;  // eventfd: wakes the loop to stop
  const int port_;
  struct State;
  std::unique_ptr<State> state_;
  std::thread thread_;
};

// Client. Errors (server unreachable until the deadline, wait timeout) throw gloo::IoException like Gloo's
// own stores; messages of timeouts contain "timeout".
class TcpStore : public gloo::rendezvous::Store {
 public:
  // `timeout`: connection retries and the default for get()/wait().
  TcpStore(std::string host, int port, std::chrono::milliseconds timeout);
  ~TcpStore() override;

  void set(const std::string& key, const std::vector<char>& data) override;
  // Waits (up to the timeout) for the key, like gloo's FileStore.
  std::vector<char> get(const std::string& key) override;
  void wait(const std::vector<std::string>& keys) override { wait(keys, timeout_); }
  void wait(const std::vector<std::string>& keys, const std::chrono::milliseconds& timeout) override;

 private:
  using Clock = std::chrono::steady_clock;
  // Sends one request and reads its reply, reconnecting (with backoff) until `deadline`.
  std::pair<bool, std::vector<char>> Call(uint8_t op, const std::vector<std::string_view>& parts,
                                          Clock::time_point deadline);
  void Connect(Clock::time_point deadline);
  void Disconnect();

  const std::string host_;
  const int port_;
  const std::chrono::milliseconds timeout_;
  std::mutex mu_;
  int fd_ = -1;
};

// The store of one group, keys namespaced by config.group_name: a gloo FileStore in rendezvous_dir when set
// (created if missing); else a TcpStore at master_addr:master_port (rank 0 first starts the server on that
// port on all interfaces and connects to it through 127.0.0.1); else, for world_size 1 only, an in-memory
// store. INVALID_ARGUMENT when world_size > 1 and neither is configured; UNAVAILABLE when rank 0 cannot
// listen on the port.
class RendezvousStore {
 public:
  static absl::StatusOr<std::unique_ptr<RendezvousStore>> Create(const GroupConfig& config);
  ~RendezvousStore();

  gloo::rendezvous::Store& store() { return *prefixed_; }
  TcpStoreServer* server() { return server_.get(); }  // rank 0 of a TCP rendezvous, else null

 private:
  RendezvousStore() = default;
  std::unique_ptr<TcpStoreServer> server_;
  std::unique_ptr<gloo::rendezvous::Store> base_;
  std::unique_ptr<gloo::rendezvous::Store> prefixed_;
};

}  // namespace quarry

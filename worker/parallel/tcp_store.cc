#include "worker/parallel/tcp_store.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <map>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "gloo/common/error.h"
#include "gloo/rendezvous/file_store.h"
#include "gloo/rendezvous/hash_store.h"
#include "gloo/rendezvous/prefix_store.h"

namespace quarry {
namespace {

constexpr uint8_t kOpSet = 1;
constexpr uint8_t kOpGet = 2;
constexpr uint8_t kOpCheck = 3;
constexpr uint32_t kMaxPart = 64u << 20;  // a rendezvous value is a few KiB; anything larger is garbage
constexpr uint32_t kMaxParts = 1u << 16;

void PutU32(std::string& out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
uint32_t GetU32(const char* p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v |= static_cast<uint32_t>(static_cast<uint8_t>(p[i])) << (8 * i);
  return v;
}

std::string ErrnoText(int err) { return std::system_category().message(err); }

[[noreturn]] void ThrowIo(const std::string& msg) { throw gloo::IoException(msg); }

// Writes all of `data` (blocking socket; MSG_NOSIGNAL so a closed peer is an error, not SIGPIPE).
bool SendAll(int fd, const char* data, size_t size) {
  while (size > 0) {
    ssize_t n = ::send(fd, data, size, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

int RemainingMs(std::chrono::steady_clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
  return static_cast<int>(std::clamp<int64_t>(left.count(), 0, 1 << 30));
}

// Reads exactly `size` bytes before `deadline`.
bool RecvAll(int fd, char* data, size_t size, std::chrono::steady_clock::time_point deadline) {
  while (size > 0) {
    pollfd p{fd, POLLIN, 0};
    int r = ::poll(&p, 1, RemainingMs(deadline));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    ssize_t n = ::recv(fd, data, size, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

}  // namespace

// ---------------------------------------------------------------------------------------------- server

struct TcpStoreServer::State {
  mutable std::mutex mu;  // guards keys (the loop thread writes, num_keys() reads)
  std::map<std::string, std::string> keys;
};

absl::StatusOr<std::unique_ptr<TcpStoreServer>> TcpStoreServer::Start(const std::string& bind_host, int port) {
  if (port < 0 || port > 65535) return absl::InvalidArgumentError(absl::StrCat("store port ", port, " out of range"));
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  hints.ai_family = AF_UNSPEC;
  addrinfo* res = nullptr;
  const std::string port_str = std::to_string(port);
  int gai = ::getaddrinfo(bind_host.empty() ? nullptr : bind_host.c_str(), port_str.c_str(), &hints, &res);
  if (gai != 0) {
    return absl::InvalidArgumentError(absl::StrCat("store: cannot resolve bind host '", bind_host, "': ",
                                                   ::gai_strerror(gai)));
  }
  // Prefer IPv6 (dual-stack) for the wildcard address so IPv4 and IPv6 clients both reach it.
  std::vector<addrinfo*> candidates;
  for (addrinfo* ai = res; ai != nullptr; ai = ai->ai_next) {
    if (ai->ai_family == AF_INET6) candidates.insert(candidates.begin(), ai);
    else if (ai->ai_family == AF_INET) candidates.push_back(ai);
  }
  int fd = -1;
  std::string last_error = "no address";
  for (addrinfo* ai : candidates) {
    fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) {
      last_error = ErrnoText(errno);
      continue;
    }
    int one = 1, zero = 0;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (ai->ai_family == AF_INET6) ::setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
    if (::bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && ::listen(fd, 128) == 0) break;
    last_error = ErrnoText(errno);
    ::close(fd);
    fd = -1;
  }
  ::freeaddrinfo(res);
  if (fd < 0) {
    return absl::UnavailableError(absl::StrCat("store: cannot listen on ", bind_host.empty() ? "*" : bind_host, ":",
                                               port, ": ", last_error));
  }
  sockaddr_storage addr{};
  socklen_t len = sizeof(addr);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  int bound_port = addr.ss_family == AF_INET6 ? ntohs(reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port)
                                              : ntohs(reinterpret_cast<sockaddr_in*>(&addr)->sin_port);
  int wake = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake < 0) {
    ::close(fd);
    return absl::InternalError(absl::StrCat("store: eventfd: ", ErrnoText(errno)));
  }
  std::unique_ptr<TcpStoreServer> server(new TcpStoreServer(fd, wake, bound_port));
  server->thread_ = std::thread([s = server.get()] { s->Loop(); });
  return server;
}

TcpStoreServer::TcpStoreServer(int listen_fd, int wake_fd, int port)
    : listen_fd_(listen_fd), wake_fd_(wake_fd), port_(port), state_(std::make_unique<State>()) {}

TcpStoreServer::~TcpStoreServer() {
  uint64_t one = 1;
  [[maybe_unused]] ssize_t n = ::write(wake_fd_, &one, sizeof(one));
  if (thread_.joinable()) thread_.join();
  ::close(listen_fd_);
  ::close(wake_fd_);
}

size_t TcpStoreServer::num_keys() const {
  std::lock_guard<std::mutex> lock(state_->mu);
  return state_->keys.size();
}

void TcpStoreServer::Loop() {
  struct Conn {
    int fd;
    std::string in;
  };
  std::vector<Conn> conns;
  auto close_conn = [&](size_t i) {
    ::close(conns[i].fd);
    conns.erase(conns.begin() + static_cast<std::ptrdiff_t>(i));
  };
  // Handles every complete request in c.in; false when the connection must close.
  auto serve = [&](Conn& c) -> bool {
    while (true) {
      if (c.in.size() < 5) return true;
      const uint8_t op = static_cast<uint8_t>(c.in[0]);
      const uint32_t n = GetU32(c.in.data() + 1);
      if (n > kMaxParts) return false;
      size_t pos = 5;
      std::vector<std::string> parts;
      for (uint32_t i = 0; i < n; ++i) {
        if (c.in.size() < pos + 4) return true;
        uint32_t len = GetU32(c.in.data() + pos);
        if (len > kMaxPart) return false;
        if (c.in.size() < pos + 4 + len) return true;
        parts.emplace_back(c.in.data() + pos + 4, len);
        pos += 4 + len;
      }
      c.in.erase(0, pos);
      bool ok = false;
      std::string value;
      {
        std::lock_guard<std::mutex> lock(state_->mu);
        if (op == kOpSet && parts.size() == 2) {
          state_->keys[parts[0]] = parts[1];
          ok = true;
        } else if (op == kOpGet && parts.size() == 1) {
          auto it = state_->keys.find(parts[0]);
          if (it != state_->keys.end()) {
            ok = true;
            value = it->second;
          }
        } else if (op == kOpCheck) {
          ok = std::all_of(parts.begin(), parts.end(), [&](const std::string& k) { return state_->keys.count(k); });
        } else {
          return false;  // unknown request
        }
      }
      std::string reply;
      reply.push_back(ok ? 1 : 0);
      PutU32(reply, static_cast<uint32_t>(value.size()));
      reply += value;
      if (!SendAll(c.fd, reply.data(), reply.size())) return false;
    }
  };
  while (true) {
    std::vector<pollfd> fds;
    fds.push_back({wake_fd_, POLLIN, 0});
    fds.push_back({listen_fd_, POLLIN, 0});
    for (const Conn& c : conns) fds.push_back({c.fd, POLLIN, 0});
    int r = ::poll(fds.data(), fds.size(), -1);
    if (r < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (fds[0].revents != 0) break;  // stop
    // Connections first (indices shift when one closes: walk backwards).
    for (size_t i = conns.size(); i-- > 0;) {
      const short ev = fds[i + 2].revents;
      if (ev == 0) continue;
      char buf[65536];
      ssize_t n = ::recv(conns[i].fd, buf, sizeof(buf), MSG_DONTWAIT);
      if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) continue;
      if (n <= 0) {
        close_conn(i);
        continue;
      }
      conns[i].in.append(buf, static_cast<size_t>(n));
      if (!serve(conns[i])) close_conn(i);
    }
    if (fds[1].revents & POLLIN) {
      int cfd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (cfd >= 0) {
        int one = 1;
        ::setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        timeval tv{5, 0};  // a client that stops reading cannot block the server forever
        ::setsockopt(cfd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
        conns.push_back({cfd, {}});
      }
    }
  }
  for (const Conn& c : conns) ::close(c.fd);
}

// ---------------------------------------------------------------------------------------------- client

TcpStore::TcpStore(std::string host, int port, std::chrono::milliseconds timeout)
    : host_(std::move(host)), port_(port), timeout_(timeout) {}

TcpStore::~TcpStore() { Disconnect(); }

void TcpStore::Disconnect() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

void TcpStore::Connect(Clock::time_point deadline) {
  auto backoff = std::chrono::milliseconds(10);
  std::string last_error;
  while (true) {
    addrinfo hints{};
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_family = AF_UNSPEC;
    addrinfo* res = nullptr;
    const std::string port_str = std::to_string(port_);
    int gai = ::getaddrinfo(host_.c_str(), port_str.c_str(), &hints, &res);
    if (gai != 0) {
      // Kubernetes: the headless Service's name resolves once the pod exists; keep trying.
      last_error = absl::StrCat("resolve: ", ::gai_strerror(gai));
    } else {
      for (addrinfo* ai = res; ai != nullptr; ai = ai->ai_next) {
        int fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
        if (fd < 0) {
          last_error = ErrnoText(errno);
          continue;
        }
        int rc = ::connect(fd, ai->ai_addr, ai->ai_addrlen);
        if (rc < 0 && errno == EINPROGRESS) {
          pollfd p{fd, POLLOUT, 0};
          int wait_ms = std::min(RemainingMs(deadline), 2000);
          rc = ::poll(&p, 1, wait_ms) == 1 ? 0 : -1;
          int err = rc == 0 ? 0 : ETIMEDOUT;
          socklen_t len = sizeof(err);
          if (rc == 0) ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
          if (err != 0) {
            rc = -1;
            errno = err;
          }
        }
        if (rc == 0) {
          ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) & ~O_NONBLOCK);
          int one = 1;
          ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
          fd_ = fd;
          ::freeaddrinfo(res);
          return;
        }
        last_error = ErrnoText(errno);
        ::close(fd);
      }
      ::freeaddrinfo(res);
    }
    if (Clock::now() + backoff >= deadline) {
      ThrowIo(absl::StrCat("TcpStore: connect timeout: rank 0's store at ", host_, ":", port_,
                           " not reachable (", last_error, ")"));
    }
    std::this_thread::sleep_for(backoff);
    backoff = std::min(backoff * 2, std::chrono::milliseconds(500));
  }
}

std::pair<bool, std::vector<char>> TcpStore::Call(uint8_t op, const std::vector<std::string_view>& parts,
                                                  Clock::time_point deadline) {
  std::string request;
  request.push_back(static_cast<char>(op));
  PutU32(request, static_cast<uint32_t>(parts.size()));
  for (std::string_view p : parts) {
    PutU32(request, static_cast<uint32_t>(p.size()));
    request.append(p.data(), p.size());
  }
  std::lock_guard<std::mutex> lock(mu_);
  while (true) {
    if (fd_ < 0) Connect(deadline);
    char header[5];
    if (SendAll(fd_, request.data(), request.size()) && RecvAll(fd_, header, 5, deadline)) {
      std::vector<char> value(GetU32(header + 1));
      if (value.empty() || RecvAll(fd_, value.data(), value.size(), deadline)) return {header[0] != 0, value};
    }
    // Connection lost (server restarting, or not yet fully up): requests are idempotent, retry.
    Disconnect();
    if (Clock::now() >= deadline) {
      ThrowIo(absl::StrCat("TcpStore: request timeout talking to ", host_, ":", port_));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

void TcpStore::set(const std::string& key, const std::vector<char>& data) {
  Call(kOpSet, {key, std::string_view(data.data(), data.size())}, Clock::now() + timeout_);
}

std::vector<char> TcpStore::get(const std::string& key) {
  wait({key}, timeout_);
  auto [found, value] = Call(kOpGet, {key}, Clock::now() + timeout_);
  if (!found) ThrowIo(absl::StrCat("TcpStore: key '", key, "' vanished"));
  return value;
}

void TcpStore::wait(const std::vector<std::string>& keys, const std::chrono::milliseconds& timeout) {
  const auto deadline = Clock::now() + timeout;
  std::vector<std::string_view> parts(keys.begin(), keys.end());
  auto backoff = std::chrono::milliseconds(1);
  while (true) {
    if (Call(kOpCheck, parts, deadline).first) return;
    if (Clock::now() + backoff >= deadline) {
      std::string names;
      for (const std::string& k : keys) absl::StrAppend(&names, names.empty() ? "" : ", ", k);
      ThrowIo(absl::StrCat("TcpStore: wait timeout for key(s): ", names, " after ", timeout.count(), " ms"));
    }
    std::this_thread::sleep_for(backoff);
    backoff = std::min(backoff * 2, std::chrono::milliseconds(50));
  }
}

// ---------------------------------------------------------------------------------------------- factory

RendezvousStore::~RendezvousStore() = default;

absl::StatusOr<std::unique_ptr<RendezvousStore>> RendezvousStore::Create(const GroupConfig& config) {
  std::unique_ptr<RendezvousStore> rs(new RendezvousStore());
  try {
    if (!config.rendezvous_dir.empty()) {
      std::error_code ec;
      std::filesystem::create_directories(config.rendezvous_dir, ec);
      if (ec) {
        return absl::InvalidArgumentError(absl::StrCat("rendezvous_dir '", config.rendezvous_dir,
                                                       "': ", ec.message()));
      }
      rs->base_ = std::make_unique<gloo::rendezvous::FileStore>(config.rendezvous_dir);
    } else if (!config.master_addr.empty()) {
      if (config.master_port <= 0 || config.master_port > 65535) {
        return absl::InvalidArgumentError(absl::StrCat("master_port ", config.master_port, " out of range"));
      }
      std::string host = config.master_addr;
      if (config.rank == 0) {
        auto server = TcpStoreServer::Start("", config.master_port);
        if (!server.ok()) return server.status();
        rs->server_ = *std::move(server);
        host = "127.0.0.1";  // the Service name may not resolve to this pod before it is ready
      }
      rs->base_ = std::make_unique<TcpStore>(host, config.master_port, config.timeout);
    } else if (config.world_size == 1) {
      rs->base_ = std::make_unique<gloo::rendezvous::HashStore>();
    } else {
      return absl::InvalidArgumentError(
          "group rendezvous: set rendezvous_dir (shared directory) or master_addr/master_port (rank 0's store)");
    }
    rs->prefixed_ = std::make_unique<gloo::rendezvous::PrefixStore>(config.group_name, *rs->base_);
  } catch (const std::exception& e) {
    return absl::UnavailableError(absl::StrCat("group rendezvous store: ", e.what()));
  }
  return rs;
}

}  // namespace quarry

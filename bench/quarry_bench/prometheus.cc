// Prometheus scrape for quarry-bench (see prometheus.h).
#include "bench/quarry_bench/prometheus.h"

#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace quarry::bench {

Samples ParsePrometheusText(std::string_view text) {
  Samples out;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(pos, end - pos);
    pos = end + 1;
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.remove_suffix(1);
    if (line.empty() || line[0] == '#') continue;
    // The series ends at the first space outside a quoted label value.
    size_t i = 0;
    bool in_braces = false, in_quotes = false;
    for (; i < line.size(); ++i) {
      const char c = line[i];
      if (in_quotes) {
        if (c == '\\') ++i;
        else if (c == '"') in_quotes = false;
      } else if (c == '"' && in_braces) {
        in_quotes = true;
      } else if (c == '{') {
        in_braces = true;
      } else if (c == '}') {
        in_braces = false;
      } else if ((c == ' ' || c == '\t') && !in_braces) {
        break;
      }
    }
    if (i >= line.size()) continue;
    std::string_view series = line.substr(0, i);
    std::string_view rest = line.substr(i);
    while (!rest.empty() && (rest[0] == ' ' || rest[0] == '\t')) rest.remove_prefix(1);
    const size_t sp = rest.find_first_of(" \t");  // an optional timestamp follows
    std::string value(rest.substr(0, sp));
    double v = 0;
    if (value == "+Inf") v = HUGE_VAL;
    else if (value == "-Inf") v = -HUGE_VAL;
    else if (value == "NaN") v = std::nan("");
    else if (!absl::SimpleAtod(value, &v)) continue;
    out[std::string(series)] = v;
  }
  return out;
}

std::string SeriesName(const std::string& series) { return series.substr(0, series.find('{')); }

Samples Deltas(const Samples& before, const Samples& after) {
  Samples out;
  for (const auto& [k, v] : after) {
    auto it = before.find(k);
    const double d = v - (it == before.end() ? 0.0 : it->second);
    if (d != 0 && d == d) out[k] = d;
  }
  return out;
}

absl::StatusOr<std::string> HttpGet(const std::string& url, std::chrono::milliseconds timeout) {
  const std::string scheme = "http://";
  if (url.compare(0, scheme.size(), scheme) != 0) {
    return absl::InvalidArgumentError(absl::StrCat("metrics URL must start with http://, got \"", url, "\""));
  }
  std::string rest = url.substr(scheme.size());
  const size_t slash = rest.find('/');
  std::string hostport = rest.substr(0, slash);
  const std::string path = slash == std::string::npos ? "/" : rest.substr(slash);
  std::string host = hostport, port = "80";
  if (!hostport.empty() && hostport[0] == '[') {  // [v6]:port
    const size_t close = hostport.find(']');
    if (close == std::string::npos) return absl::InvalidArgumentError(absl::StrCat("bad host in \"", url, "\""));
    host = hostport.substr(1, close - 1);
    if (close + 1 < hostport.size() && hostport[close + 1] == ':') port = hostport.substr(close + 2);
  } else if (const size_t colon = hostport.rfind(':'); colon != std::string::npos) {
    host = hostport.substr(0, colon);
    port = hostport.substr(colon + 1);
  }
  if (host.empty()) return absl::InvalidArgumentError(absl::StrCat("no host in \"", url, "\""));

  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (int rc = getaddrinfo(host.c_str(), port.c_str(), &hints, &res); rc != 0) {
    return absl::UnavailableError(absl::StrCat(url, ": cannot resolve ", host, ": ", gai_strerror(rc)));
  }
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  auto left_ms = [&] {
    return static_cast<int>(std::max<long long>(
        0, std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count()));
  };
  int fd = -1;
  std::string last_error = "no address";
  for (addrinfo* a = res; a != nullptr && fd < 0; a = a->ai_next) {
    fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) continue;
    if (connect(fd, a->ai_addr, a->ai_addrlen) != 0 && errno != EINPROGRESS) {
      last_error = std::strerror(errno);
      close(fd);
      fd = -1;
      continue;
    }
    pollfd p{fd, POLLOUT, 0};
    int err = 0;
    socklen_t len = sizeof(err);
    if (poll(&p, 1, left_ms()) != 1 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) {
      last_error = err ? std::strerror(err) : "connect timed out";
      close(fd);
      fd = -1;
    }
  }
  freeaddrinfo(res);
  if (fd < 0) return absl::UnavailableError(absl::StrCat(url, ": cannot connect: ", last_error));

  const std::string req = absl::StrCat("GET ", path, " HTTP/1.0\r\nHost: ", hostport,
                                       "\r\nAccept: text/plain\r\nConnection: close\r\n\r\n");
  size_t sent = 0;
  std::string resp;
  absl::Status status = absl::OkStatus();
  while (sent < req.size() && status.ok()) {
    pollfd p{fd, POLLOUT, 0};
    if (poll(&p, 1, left_ms()) != 1) {
      status = absl::UnavailableError(absl::StrCat(url, ": timed out sending"));
      break;
    }
    const ssize_t n = send(fd, req.data() + sent, req.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno != EAGAIN && errno != EINTR) status = absl::UnavailableError(absl::StrCat(url, ": send: ", std::strerror(errno)));
    if (n > 0) sent += n;
  }
  constexpr size_t kMaxBytes = 64 << 20;
  while (status.ok()) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, left_ms()) != 1) {
      status = absl::UnavailableError(absl::StrCat(url, ": timed out reading"));
      break;
    }
    char buf[16384];
    const ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n == 0) break;
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) continue;
      status = absl::UnavailableError(absl::StrCat(url, ": recv: ", std::strerror(errno)));
      break;
    }
    resp.append(buf, n);
    if (resp.size() > kMaxBytes) status = absl::ResourceExhaustedError(absl::StrCat(url, ": response over 64 MiB"));
  }
  close(fd);
  if (!status.ok()) return status;
  const size_t header_end = resp.find("\r\n\r\n");
  if (resp.compare(0, 5, "HTTP/") != 0 || header_end == std::string::npos) {
    return absl::UnavailableError(absl::StrCat(url, ": not an HTTP response"));
  }
  const size_t sp = resp.find(' ');
  const std::string code = resp.substr(sp + 1, 3);
  if (code != "200") {
    return absl::UnavailableError(absl::StrCat(url, ": HTTP ", resp.substr(sp + 1, resp.find("\r\n") - sp - 1)));
  }
  return resp.substr(header_end + 4);
}

}  // namespace quarry::bench

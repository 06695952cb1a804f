// Helpers for the multi-process communicator tests: temp dirs, a free loopback port, and running one
// function per rank in forked processes with a hard deadline (children that outlive it are killed).
#pragma once

#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
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

namespace quarry::testing {

class TempDir {
 public:
  explicit TempDir(const std::string& prefix) {
    std::string tmpl = (std::filesystem::temp_directory_path() / (prefix + "_XXXXXX")).string();
    char* made = ::mkdtemp(tmpl.data());
    path_ = made != nullptr ? made : "";
  }
  ~TempDir() {
    std::error_code ec;
    if (!path_.empty()) std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// A port the kernel just handed out on 127.0.0.1 (released again; good enough for tests).
inline int FreeTcpPort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  int port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
    socklen_t len = sizeof(addr);
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
    port = ntohs(addr.sin_port);
  }
  ::close(fd);
  return port;
}

struct ProcessResult {
  bool exited = false;    // ended by itself (exit code below)
  int exit_code = -1;
  bool signaled = false;  // killed by a signal (the victim of a test, or us at the deadline)
  bool killed_by_deadline = false;
  std::string text;       // what the rank reported ("" = fine)
};

// Forks n children; child r runs body(r) and exits 0 when it returned "" (else 1, the text goes back through
// a pipe). Waits at most `limit` in total, then SIGKILLs whatever is left.
inline std::vector<ProcessResult> RunProcesses(int n, std::chrono::milliseconds limit,
                                               const std::function<std::string(int)>& body) {
  std::vector<ProcessResult> results(n);
  std::vector<pid_t> pids(n, -1);
  std::vector<int> pipes(n, -1);
  std::fflush(nullptr);
  for (int r = 0; r < n; ++r) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) {
      results[r].text = "pipe failed";
      continue;
    }
    pid_t pid = ::fork();
    if (pid == 0) {
      ::close(fds[0]);
      std::string text;
      try {
        text = body(r);
      } catch (const std::exception& e) {
        text = std::string("exception: ") + e.what();
      }
      if (text.size() > 3000) text.resize(3000);
      size_t off = 0;
      while (off < text.size()) {
        ssize_t w = ::write(fds[1], text.data() + off, text.size() - off);
        if (w <= 0) break;
        off += static_cast<size_t>(w);
      }
      ::_exit(text.empty() ? 0 : 1);
    }
    ::close(fds[1]);
    pids[r] = pid;
    pipes[r] = fds[0];
    ::fcntl(fds[0], F_SETFL, O_NONBLOCK);
  }
  const auto deadline = std::chrono::steady_clock::now() + limit;
  auto drain = [&](int r) {
    char buf[4096];
    ssize_t k;
    while (pipes[r] >= 0 && (k = ::read(pipes[r], buf, sizeof(buf))) > 0) results[r].text.append(buf, k);
  };
  int left = 0;
  for (pid_t p : pids) left += p > 0;
  while (left > 0) {
    for (int r = 0; r < n; ++r) {
      if (pids[r] <= 0) continue;
      drain(r);
      int status = 0;
      if (::waitpid(pids[r], &status, WNOHANG) == pids[r]) {
        results[r].exited = WIFEXITED(status);
        results[r].exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        results[r].signaled = WIFSIGNALED(status);
        pids[r] = -1;
        --left;
      }
    }
    if (left == 0) break;
    if (std::chrono::steady_clock::now() >= deadline) {
      for (int r = 0; r < n; ++r) {
        if (pids[r] <= 0) continue;
        ::kill(pids[r], SIGKILL);
        ::waitpid(pids[r], nullptr, 0);
        results[r].signaled = true;
        results[r].killed_by_deadline = true;
        results[r].text += " [killed: still running at the test's deadline]";
        pids[r] = -1;
      }
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  for (int r = 0; r < n; ++r) {
    drain(r);
    if (pipes[r] >= 0) ::close(pipes[r]);
  }
  return results;
}

}  // namespace quarry::testing

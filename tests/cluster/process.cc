// Process: fork/exec with piped output, bounded waits, SIGKILL as the last resort.
#include "tests/cluster/process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace quarry::testing {

std::unique_ptr<Process> Process::Spawn(const std::string& name, const std::vector<std::string>& argv,
                                        std::string* error) {
  if (argv.empty()) {
    *error = "empty argv";
    return nullptr;
  }
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) {
    *error = std::string("pipe2: ") + std::strerror(errno);
    return nullptr;
  }
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid < 0) {
    *error = std::string("fork: ") + std::strerror(errno);
    close(fds[0]);
    close(fds[1]);
    return nullptr;
  }
  if (pid == 0) {  // child: async-signal-safe calls only
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);
    dup2(fds[1], STDOUT_FILENO);
    dup2(fds[1], STDERR_FILENO);
    // Unblock everything the test runner may have blocked (the children rely on sigwait of SIGTERM).
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    execv(args[0], args.data());
    const char msg[] = "exec failed\n";
    (void)!write(STDERR_FILENO, msg, sizeof(msg) - 1);
    _exit(127);
  }
  close(fds[1]);
  std::unique_ptr<Process> p(new Process());
  p->name_ = name;
  p->pid_ = pid;
  const int rfd = fds[0];
  p->reader_ = std::thread([raw = p.get(), rfd] { raw->ReadLoop(rfd); });
  return p;
}

Process::~Process() {
  Kill();
  if (reader_.joinable()) reader_.join();
}

void Process::ReadLoop(int fd) {
  char buf[4096];
  for (;;) {
    const ssize_t n = read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    std::lock_guard<std::mutex> lock(mu_);
    output_.append(buf, static_cast<size_t>(n));
    cv_.notify_all();
  }
  close(fd);
  std::lock_guard<std::mutex> lock(mu_);
  eof_ = true;
  cv_.notify_all();
}

std::optional<std::string> Process::WaitForLine(const std::string& marker, std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  std::optional<std::string> found;
  cv_.wait_for(lock, timeout, [&] {
    size_t at = output_.find(marker);
    if (at != std::string::npos) {
      const size_t begin = at + marker.size();
      const size_t end = output_.find_first_of(" \n", begin);
      if (end != std::string::npos) {  // the whole word has arrived
        found = output_.substr(begin, end - begin);
        return true;
      }
    }
    return eof_;
  });
  return found;
}

void Process::Signal(int sig) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!exit_ && pid_ > 0) kill(pid_, sig);
}

std::optional<int> Process::TryReap() {
  std::lock_guard<std::mutex> lock(mu_);
  if (exit_ || pid_ <= 0) return exit_;
  int status = 0;
  const pid_t r = waitpid(pid_, &status, WNOHANG);
  if (r == pid_) {
    exit_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  } else if (r < 0 && errno == ECHILD) {
    exit_ = -1;
  }
  return exit_;
}

std::optional<int> Process::WaitExit(std::chrono::milliseconds timeout) {
  const auto end = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (auto code = TryReap()) return code;
    if (std::chrono::steady_clock::now() >= end) return std::nullopt;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

void Process::Kill() {
  if (TryReap()) return;
  Signal(SIGKILL);
  WaitExit(std::chrono::seconds(10));
}

bool Process::Running() { return !TryReap().has_value(); }

std::string Process::Output() {
  std::lock_guard<std::mutex> lock(mu_);
  return output_;
}

}  // namespace quarry::testing

// ChildProcess: posix_spawn with a pipe, a reader thread, and a SIGTERM-then-SIGKILL stop.
#include "worker/cli/child_process.h"

#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>

extern char** environ;

namespace quarry::cli {

ChildProcess::ChildProcess(std::string name, std::vector<std::string> argv, std::vector<std::string> env)
    : name_(std::move(name)), argv_(std::move(argv)), env_(std::move(env)) {}

ChildProcess::~ChildProcess() {
  if (pid_ > 0 && !reaped_) Stop(std::chrono::seconds(5));
  if (reader_.joinable()) reader_.join();
}

bool ChildProcess::Start() {
  int fds[2];
  if (pipe(fds) != 0) return false;
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&actions, fds[1], STDERR_FILENO);
  posix_spawn_file_actions_addclose(&actions, fds[0]);
  posix_spawn_file_actions_addclose(&actions, fds[1]);
  // The child must not inherit the parent's blocked SIGTERM/SIGINT mask.
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none;
  sigemptyset(&none);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK);
  std::vector<char*> args;
  for (std::string& a : argv_) args.push_back(a.data());
  args.push_back(nullptr);
  std::vector<char*> envp;
  for (std::string& e : env_) envp.push_back(e.data());
  for (char** e = environ; *e != nullptr; ++e) envp.push_back(*e);
  envp.push_back(nullptr);
  const int rc = posix_spawn(&pid_, args[0], &actions, &attr, args.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  close(fds[1]);
  if (rc != 0) {
    close(fds[0]);
    pid_ = -1;
    std::fprintf(stderr, "quarry serve: cannot start %s (%s): %s\n", name_.c_str(), argv_[0].c_str(), std::strerror(rc));
    return false;
  }
  reader_ = std::thread([this, fd = fds[0]] { ReadLoop(fd); });
  return true;
}

void ChildProcess::ReadLoop(int fd) {
  FILE* in = fdopen(fd, "r");
  char line[4096];
  while (in != nullptr && std::fgets(line, sizeof(line), in) != nullptr) {
    std::fprintf(stderr, "[%s] %s", name_.c_str(), line);
    const char* at = std::strstr(line, "listening on ");
    if (at != nullptr) {
      std::string addr(at + std::strlen("listening on "));
      addr = addr.substr(0, addr.find_first_of(" \n"));
      std::lock_guard<std::mutex> lock(mu_);
      if (address_.empty()) address_ = addr;
      cv_.notify_all();
    }
  }
  if (in != nullptr) std::fclose(in);
  std::lock_guard<std::mutex> lock(mu_);
  eof_ = true;
  cv_.notify_all();
}

std::string ChildProcess::WaitReady(std::chrono::seconds timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait_for(lock, timeout, [this] { return !address_.empty() || eof_; });
  return address_;
}

bool ChildProcess::exited() {
  std::lock_guard<std::mutex> lock(mu_);
  return eof_;
}

int ChildProcess::Wait(std::chrono::seconds timeout) {
  if (pid_ <= 0 || reaped_) return 0;
  int status = 0;
  const auto end = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < end) {
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      reaped_ = true;
      return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  Stop(std::chrono::seconds(2));
  return -1;  // did not exit by itself in time
}

int ChildProcess::Stop(std::chrono::seconds grace) {
  if (pid_ <= 0 || reaped_) return 0;
  kill(pid_, SIGTERM);
  int status = 0;
  const auto end = std::chrono::steady_clock::now() + grace;
  while (std::chrono::steady_clock::now() < end) {
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      reaped_ = true;
      return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  kill(pid_, SIGKILL);
  waitpid(pid_, &status, 0);
  reaped_ = true;
  return -1;
}

}  // namespace quarry::cli

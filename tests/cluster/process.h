// A child process for the multi-process cluster tests: fork + exec with stdout and stderr piped into a
// buffer (kept for failure messages), waits on output lines with timeouts, signals, bounded reaping, and
// SIGKILL on destruction so nothing outlives the test (children also get SIGKILL if the test process dies).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace quarry::testing {

class Process {
 public:
  // Starts argv[0] (a path) with the given arguments; nullptr (and `error` set) when it cannot be started.
  // Call from the thread that lives as long as the child (the test's main thread): the child gets SIGKILL
  // when that thread ends.
  static std::unique_ptr<Process> Spawn(const std::string& name, const std::vector<std::string>& argv,
                                        std::string* error);
  ~Process();  // SIGKILL if still running, then reap

  // Waits until a line containing `marker` was printed; returns the first word after the marker (e.g. the
  // address after "listening on "). nullopt when the process ended first or `timeout` passed.
  std::optional<std::string> WaitForLine(const std::string& marker, std::chrono::milliseconds timeout);
  void Signal(int sig);
  // Waits up to `timeout` for the process to end; its exit code, or 128 + signal number, or nullopt.
  std::optional<int> WaitExit(std::chrono::milliseconds timeout);
  // SIGKILL and reap (no-op when already reaped).
  void Kill();
  bool Running();
  std::string Output();  // everything printed so far
  const std::string& name() const { return name_; }
  pid_t pid() const { return pid_; }

 private:
  Process() = default;
  void ReadLoop(int fd);
  std::optional<int> TryReap();

  std::string name_;
  pid_t pid_ = -1;
  std::optional<int> exit_;  // set once reaped
  std::thread reader_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::string output_;
  bool eof_ = false;
};

}  // namespace quarry::testing

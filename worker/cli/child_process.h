// A child process of `quarry serve`: started with posix_spawn, stdout+stderr piped and echoed with a prefix,
// the first "listening on ADDR" line captured as its address, stopped with SIGTERM (then SIGKILL).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace quarry::cli {

class ChildProcess {
 public:
  // `env` entries ("NAME=value") are added to this process's environment for the child.
  ChildProcess(std::string name, std::vector<std::string> argv, std::vector<std::string> env = {});
  ~ChildProcess();

  bool Start();  // false if the program could not be spawned
  // Waits for the "listening on ADDR" line; empty when the process exited first or the timeout passed.
  std::string WaitReady(std::chrono::seconds timeout);
  bool exited();  // the output pipe closed (the process ended)
  // SIGTERM, wait up to `grace`, then SIGKILL; reaps the process. Returns its exit status (-1 if killed).
  int Stop(std::chrono::seconds grace);
  // Waits up to `timeout` for the process to exit by itself (then Stop); returns its exit status.
  int Wait(std::chrono::seconds timeout);
  const std::string& name() const { return name_; }
  pid_t pid() const { return pid_; }

 private:
  void ReadLoop(int fd);

  std::string name_;
  std::vector<std::string> argv_;
  std::vector<std::string> env_;
  pid_t pid_ = -1;
  std::thread reader_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::string address_;
  bool eof_ = false;
  bool reaped_ = false;
};

}  // namespace quarry::cli

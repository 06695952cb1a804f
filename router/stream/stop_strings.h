// Stop strings over a stream of text deltas: text is released only when it can no longer be the start of a
// stop string, so a stop string split across tokens is still caught and never partially sent.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace quarry {

class StopStringMatcher {
 public:
  explicit StopStringMatcher(std::vector<std::string> stops, bool include_stop_in_output = false);

  struct Result {
    std::string text;      // safe to send now
    bool stopped = false;  // a stop string matched; `text` ends just before it (or after it when included)
    std::string matched;   // the stop string that matched
  };
  // Appends `delta` to the pending text. After a stop, further calls return nothing.
  Result Push(const std::string& delta);
  // End of generation: releases whatever was held back.
  std::string Flush();
  bool stopped() const { return stopped_; }

 private:
  std::vector<std::string> stops_;
  bool include_;
  bool stopped_ = false;
  std::string pending_;  // held back: a suffix that is a proper prefix of some stop string
  size_t max_len_ = 0;
};

}  // namespace quarry

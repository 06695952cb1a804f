// StopStringMatcher: earliest match wins (ties: the longest stop string); hold back the longest suffix of the
// pending text that is a proper prefix of a stop string.
#include "router/stream/stop_strings.h"

#include <algorithm>

namespace quarry {

StopStringMatcher::StopStringMatcher(std::vector<std::string> stops, bool include_stop_in_output)
    : include_(include_stop_in_output) {
  for (std::string& s : stops) {
    if (!s.empty()) stops_.push_back(std::move(s));
  }
  for (const std::string& s : stops_) max_len_ = std::max(max_len_, s.size());
}

StopStringMatcher::Result StopStringMatcher::Push(const std::string& delta) {
  Result r;
  if (stopped_) return r;
  pending_ += delta;
  // Earliest occurrence of any stop string.
  size_t best = std::string::npos;
  const std::string* which = nullptr;
  for (const std::string& s : stops_) {
    const size_t at = pending_.find(s);
    if (at != std::string::npos && (at < best || (at == best && s.size() > which->size()))) {
      best = at;
      which = &s;
    }
  }
  if (which != nullptr) {
    stopped_ = true;
    r.stopped = true;
    r.matched = *which;
    r.text = pending_.substr(0, include_ ? best + which->size() : best);
    pending_.clear();
    return r;
  }
  // Hold back the longest suffix that could still grow into a stop string.
  size_t hold = 0;
  const size_t limit = std::min(pending_.size(), max_len_ > 0 ? max_len_ - 1 : 0);
  for (size_t len = limit; len > 0; --len) {
    const size_t start = pending_.size() - len;
    bool prefix = false;
    for (const std::string& s : stops_) {
      if (s.size() > len && pending_.compare(start, len, s, 0, len) == 0) {
        prefix = true;
        break;
      }
    }
    if (prefix) {
      hold = len;
      break;
    }
  }
  r.text = pending_.substr(0, pending_.size() - hold);
  pending_.erase(0, pending_.size() - hold);
  return r;
}

std::string StopStringMatcher::Flush() {
  std::string out;
  if (!stopped_) out.swap(pending_);
  return out;
}

}  // namespace quarry

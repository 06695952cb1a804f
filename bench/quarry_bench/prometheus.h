// quarry-bench server-side correlation: fetch a Prometheus text-format page over plain HTTP (a minimal
// HTTP/1.0 GET on a socket, bounded in time and size), parse its samples and compute before/after deltas.
#pragma once

#include <chrono>
#include <map>
#include <string>

#include "absl/status/statusor.h"

namespace quarry::bench {

// series text as exposed ("name{label=\"v\",...}" or "name") -> value.
using Samples = std::map<std::string, double>;

// Parses the text exposition format; comments, blank and malformed lines are skipped.
Samples ParsePrometheusText(std::string_view text);

// The metric name of a series key (text before '{').
std::string SeriesName(const std::string& series);

// after - before for every series of `after` whose value changed (a series missing before counts from 0).
Samples Deltas(const Samples& before, const Samples& after);

// GET http://HOST:PORT/PATH; the body when the status is 200. UNAVAILABLE for connection failures and
// timeouts, INVALID_ARGUMENT for a URL that is not http://host[:port][/path].
absl::StatusOr<std::string> HttpGet(const std::string& url, std::chrono::milliseconds timeout);

}  // namespace quarry::bench

#include "worker/parallel/group_env.h"

#include <cctype>
#include <charconv>
#include <string>

#include "absl/strings/str_cat.h"

namespace quarry {
namespace {

// Parses a whole decimal integer in [lo, hi]; INVALID_ARGUMENT naming the variable otherwise.
absl::StatusOr<int64_t> ParseInt(const char* name, const char* value, int64_t lo, int64_t hi) {
  std::string v(value);
  int64_t out = 0;
  auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), out);
  if (v.empty() || ec != std::errc() || end != v.data() + v.size()) {
    return absl::InvalidArgumentError(absl::StrCat(name, "='", v, "' is not an integer"));
  }
  if (out < lo || out > hi) {
    return absl::InvalidArgumentError(absl::StrCat(name, "=", out, " is out of range [", lo, ", ", hi, "]"));
  }
  return out;
}

const char* NonEmpty(const EnvLookup& getenv, const char* name) {
  const char* v = getenv(name);
  return v != nullptr && v[0] != '\0' ? v : nullptr;
}

}  // namespace

int PodOrdinalFromHostname(const std::string& hostname) {
  size_t dash = hostname.rfind('-');
  if (dash == std::string::npos || dash + 1 >= hostname.size()) return -1;
  int64_t ordinal = 0;
  for (size_t i = dash + 1; i < hostname.size(); ++i) {
    if (!std::isdigit(static_cast<unsigned char>(hostname[i]))) return -1;
    ordinal = ordinal * 10 + (hostname[i] - '0');
    if (ordinal > (1 << 20)) return -1;
  }
  return static_cast<int>(ordinal);
}

absl::StatusOr<GroupConfig> GroupConfigFromEnv(const EnvLookup& getenv) {
  GroupConfig config;
  if (const char* v = NonEmpty(getenv, "QUARRY_WORLD_SIZE")) {
    auto n = ParseInt("QUARRY_WORLD_SIZE", v, 1, 1 << 16);
    if (!n.ok()) return n.status();
    config.world_size = static_cast<int>(*n);
  }
  const char* hostname = NonEmpty(getenv, "HOSTNAME");
  if (const char* v = NonEmpty(getenv, "QUARRY_RANK")) {
    auto r = ParseInt("QUARRY_RANK", v, 0, config.world_size - 1);
    if (!r.ok()) return r.status();
    config.rank = static_cast<int>(*r);
  } else if (config.world_size > 1) {
    int ordinal = hostname != nullptr ? PodOrdinalFromHostname(hostname) : -1;
    if (ordinal < 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "QUARRY_RANK is unset and HOSTNAME='", hostname != nullptr ? hostname : "",
          "' has no StatefulSet ordinal (name-N) to take the rank from"));
    }
    if (ordinal >= config.world_size) {
      return absl::InvalidArgumentError(absl::StrCat("HOSTNAME='", hostname, "': pod ordinal ", ordinal,
                                                     " (the rank) is not below QUARRY_WORLD_SIZE=",
                                                     config.world_size));
    }
    config.rank = ordinal;
  }
  config.master_port = 29500;
  if (const char* v = NonEmpty(getenv, "QUARRY_MASTER_PORT")) {
    auto p = ParseInt("QUARRY_MASTER_PORT", v, 1, 65535);
    if (!p.ok()) return p.status();
    config.master_port = static_cast<int>(*p);
  }
  if (const char* v = NonEmpty(getenv, "QUARRY_MASTER_ADDR")) config.master_addr = v;
  if (const char* v = NonEmpty(getenv, "QUARRY_RENDEZVOUS_DIR")) config.rendezvous_dir = v;
  if (const char* v = NonEmpty(getenv, "QUARRY_GROUP_TIMEOUT_MS")) {
    auto t = ParseInt("QUARRY_GROUP_TIMEOUT_MS", v, 1, int64_t{24} * 3600 * 1000);
    if (!t.ok()) return t.status();
    config.timeout = std::chrono::milliseconds(*t);
  }
  if (const char* v = NonEmpty(getenv, "QUARRY_GROUP_NAME")) config.group_name = v;
  if (const char* v = NonEmpty(getenv, "QUARRY_INTERFACE_HOST")) {
    config.interface_host = v;
  } else if (!config.master_addr.empty() && config.rendezvous_dir.empty() && hostname != nullptr) {
    config.interface_host = hostname;
  }
  if (config.world_size > 1 && config.rendezvous_dir.empty() && config.master_addr.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("QUARRY_WORLD_SIZE=", config.world_size,
                                                   " needs QUARRY_MASTER_ADDR (rank 0's store) or "
                                                   "QUARRY_RENDEZVOUS_DIR (shared directory)"));
  }
  return config;
}

}  // namespace quarry

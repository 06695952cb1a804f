// GroupConfig from environment variables (Kubernetes StatefulSet or local mode). Only main.cc files read the
// environment: they pass ::getenv; tests pass a lookup over a map.
//
//   QUARRY_RANK              rank; when unset, the StatefulSet pod ordinal: HOSTNAME's trailing "-N"
//   QUARRY_WORLD_SIZE        ranks in the group (default 1)
//   QUARRY_MASTER_ADDR       rank 0's host (headless Service name: <pod-0>.<service>) for the TCP store
//   QUARRY_MASTER_PORT       the TCP store's port (default 29500)
//   QUARRY_RENDEZVOUS_DIR    shared directory for a file-store rendezvous (local mode); wins over MASTER_ADDR
//   QUARRY_GROUP_TIMEOUT_MS  per-collective and rendezvous timeout (default 30000)
//   QUARRY_INTERFACE_HOST    address this rank's transport binds to; default: HOSTNAME when MASTER_ADDR is
//                            set (a pod's hostname resolves to its IP), else 127.0.0.1
//   QUARRY_GROUP_NAME        key namespace in the store (default "quarry")
//
// A bad value gives INVALID_ARGUMENT naming the variable. world_size > 1 needs QUARRY_RENDEZVOUS_DIR or
// QUARRY_MASTER_ADDR.
#pragma once

#include <functional>

#include "absl/status/statusor.h"
#include "worker/parallel/communicator.h"

namespace quarry {

// Returns the value of a variable or null when unset (::getenv's contract).
using EnvLookup = std::function<const char*(const char*)>;

absl::StatusOr<GroupConfig> GroupConfigFromEnv(const EnvLookup& getenv);

// The StatefulSet ordinal at the end of a pod hostname ("quarry-worker-3" -> 3); -1 when there is none.
int PodOrdinalFromHostname(const std::string& hostname);

}  // namespace quarry

// Gloo (TCP transport) backend of Communicator for CPU processes. CreateGlooCommunicator is declared in
// communicator.h; this header adds what tests and owners need beyond it.
//
// Behaviour: every collective uses config.timeout end to end. Gloo reports a peer's death as an I/O error on
// the connection to it (UNAVAILABLE) and a peer that stops participating as a timeout (DEADLINE_EXCEEDED).
// After any failure the communicator is broken: a Gloo context in an unknown transport state cannot be
// reused, so every later call returns UNAVAILABLE at once (healthy() == false) and the owner recreates the
// group on all ranks (with a fresh rendezvous: a new rendezvous_dir, a different group_name, or rank 0's
// restarted TCP store).
//
// Process-wide: the first CreateGlooCommunicator sets SIGPIPE to SIG_IGN when it is still SIG_DFL (Gloo's TCP
// pairs write with writev, which would otherwise kill the process when a peer's connection is gone).
#pragma once

#include "worker/parallel/communicator.h"

namespace quarry {

// Maps an exception thrown by Gloo (or the stores) to a status: messages about timeouts give
// DEADLINE_EXCEEDED, everything else UNAVAILABLE. `what` names the call.
absl::Status GlooErrorToStatus(const char* what, const std::exception& e);

}  // namespace quarry

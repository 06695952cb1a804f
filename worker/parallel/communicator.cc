// CheckAllToAllVArgs: the argument rules every Communicator backend applies to AllToAllV.
#include "worker/parallel/communicator.h"

#include "absl/strings/str_cat.h"

namespace quarry {

absl::Status CheckAllToAllVArgs(int world_size, const void* send, std::span<const int64_t> send_counts,
                                std::span<const int64_t> send_offsets, const void* recv,
                                std::span<const int64_t> recv_counts, std::span<const int64_t> recv_offsets,
                                int64_t* send_total, int64_t* recv_total) {
  const size_t n = static_cast<size_t>(world_size);
  if (send_counts.size() != n || send_offsets.size() != n || recv_counts.size() != n || recv_offsets.size() != n) {
    return absl::InvalidArgumentError(absl::StrCat("AllToAllV needs world_size (", n, ") counts and offsets each"));
  }
  *send_total = 0;
  *recv_total = 0;
  for (size_t p = 0; p < n; ++p) {
    if (send_counts[p] < 0 || send_offsets[p] < 0 || recv_counts[p] < 0 || recv_offsets[p] < 0) {
      return absl::InvalidArgumentError(absl::StrCat("AllToAllV: negative count or offset for peer ", p));
    }
    *send_total += send_counts[p];
    *recv_total += recv_counts[p];
  }
  if ((*send_total > 0 && send == nullptr) || (*recv_total > 0 && recv == nullptr)) {
    return absl::InvalidArgumentError("AllToAllV: null buffer with non-zero count");
  }
  return absl::OkStatus();
}

}  // namespace quarry

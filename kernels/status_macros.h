// Early-return helpers for absl::Status / absl::StatusOr (used by every layer of Quarry).
#pragma once

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define QUARRY_RETURN_IF_ERROR(expr)                \
  do {                                              \
    ::absl::Status quarry_status_ = (expr);         \
    if (!quarry_status_.ok()) return quarry_status_; \
  } while (0)

#define QUARRY_STATUS_CONCAT_INNER_(a, b) a##b
#define QUARRY_STATUS_CONCAT_(a, b) QUARRY_STATUS_CONCAT_INNER_(a, b)

// QUARRY_ASSIGN_OR_RETURN(auto x, Expr()); returns the error status of Expr() if any.
#define QUARRY_ASSIGN_OR_RETURN(lhs, expr) \
  QUARRY_ASSIGN_OR_RETURN_IMPL_(QUARRY_STATUS_CONCAT_(quarry_statusor_, __LINE__), lhs, expr)
#define QUARRY_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                                  \
  if (!tmp.ok()) return tmp.status();                 \
  lhs = std::move(tmp).value()

// JSON bridge for template values: Python json.dumps (as transformers' tojson prints it) and conversion
// from/to nlohmann::ordered_json with key order preserved.
#pragma once

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "router/text/template/value.h"

namespace quarry::chat {

struct DumpsOptions {
  std::optional<std::string> indent;  // json.dumps(indent=...): None = single line
  bool sort_keys = false;
};

// Python json.dumps(v, ensure_ascii=False, indent=..., sort_keys=...): separators ", " and ": " (","
// between items when indenting), Python float repr, NaN/Infinity, strings escaped like Python, non-ASCII raw.
// Undefined, namespaces and callables are not serializable (INVALID_ARGUMENT).
absl::StatusOr<std::string> JsonDumps(const Value& v, const DumpsOptions& options = {});

// Appends s escaped and quoted as Python's json encoder does with ensure_ascii=False.
void AppendJsonString(std::string_view s, std::string& out);

// nlohmann -> Value (objects keep their order; integers beyond int64 become floats). Depth limit 256.
absl::StatusOr<Value> FromJson(const nlohmann::ordered_json& j);

// Value -> nlohmann (strings, numbers, bool, None, lists, dicts with string keys).
absl::StatusOr<nlohmann::ordered_json> ToJson(const Value& v);

}  // namespace quarry::chat

#include "router/text/template/json.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace quarry::chat {
namespace {

constexpr int kMaxDepth = 256;

absl::Status TooDeep() {
  return absl::InvalidArgumentError(absl::StrCat("JSON nesting deeper than the limit of ", kMaxDepth));
}

std::string FloatJson(double d) {
  if (std::isnan(d)) return "NaN";
  if (std::isinf(d)) return d > 0 ? "Infinity" : "-Infinity";
  return PyFloatRepr(d);
}

absl::StatusOr<std::string> KeyString(const Value& k) {
  switch (k.kind()) {
    case Value::Kind::kString: return k.as_string();
    case Value::Kind::kBool: return std::string(k.as_bool() ? "true" : "false");
    case Value::Kind::kNone: return std::string("null");
    case Value::Kind::kInt: return std::to_string(k.as_int());
    case Value::Kind::kFloat: return FloatJson(k.as_float());
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("keys must be str, int, float, bool or None, not ", k.TypeName()));
  }
}

absl::Status Dump(const Value& v, const DumpsOptions& opt, int depth, std::string& out) {
  if (depth > kMaxDepth) return TooDeep();
  auto newline = [&](int level) {
    out.push_back('\n');
    for (int i = 0; i < level; ++i) out += *opt.indent;
  };
  const char* item_sep = opt.indent ? "," : ", ";
  switch (v.kind()) {
    case Value::Kind::kNone: out += "null"; return absl::OkStatus();
    case Value::Kind::kBool: out += v.as_bool() ? "true" : "false"; return absl::OkStatus();
    case Value::Kind::kInt: out += std::to_string(v.as_int()); return absl::OkStatus();
    case Value::Kind::kFloat: out += FloatJson(v.as_float()); return absl::OkStatus();
    case Value::Kind::kString: AppendJsonString(v.as_string(), out); return absl::OkStatus();
    case Value::Kind::kList: {
      const auto& items = v.as_list().items;
      if (items.empty()) {
        out += "[]";
        return absl::OkStatus();
      }
      out.push_back('[');
      for (size_t i = 0; i < items.size(); ++i) {
        if (i > 0) out += item_sep;
        if (opt.indent) newline(depth + 1);
        absl::Status s = Dump(items[i], opt, depth + 1, out);
        if (!s.ok()) return s;
      }
      if (opt.indent) newline(depth);
      out.push_back(']');
      return absl::OkStatus();
    }
    case Value::Kind::kDict: {
      std::vector<const std::pair<Value, Value>*> entries;
      for (const auto& e : v.as_dict().entries) entries.push_back(&e);
      if (entries.empty()) {
        out += "{}";
        return absl::OkStatus();
      }
      if (opt.sort_keys) {
        absl::Status err;
        std::stable_sort(entries.begin(), entries.end(), [&](const auto* a, const auto* b) {
          auto less = Less(a->first, b->first);
          if (!less.ok()) {
            err = less.status();
            return false;
          }
          return *less;
        });
        if (!err.ok()) return err;
      }
      out.push_back('{');
      for (size_t i = 0; i < entries.size(); ++i) {
        if (i > 0) out += item_sep;
        if (opt.indent) newline(depth + 1);
        auto key = KeyString(entries[i]->first);
        if (!key.ok()) return key.status();
        AppendJsonString(*key, out);
        out += ": ";
        absl::Status s = Dump(entries[i]->second, opt, depth + 1, out);
        if (!s.ok()) return s;
      }
      if (opt.indent) newline(depth);
      out.push_back('}');
      return absl::OkStatus();
    }
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("Object of type ", v.TypeName(), " is not JSON serializable"));
  }
}

}  // namespace

void AppendJsonString(std::string_view s, std::string& out) {
  out.push_back('"');
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof(buf), "\\u%04x", c);
          out += buf;
        } else {
          out.push_back(static_cast<char>(c));
        }
    }
  }
  out.push_back('"');
}

absl::StatusOr<std::string> JsonDumps(const Value& v, const DumpsOptions& options) {
  std::string out;
  absl::Status s = Dump(v, options, 0, out);
  if (!s.ok()) return s;
  return out;
}

namespace {

absl::StatusOr<Value> FromJsonAt(const nlohmann::ordered_json& j, int depth) {
  if (depth > kMaxDepth) return TooDeep();
  switch (j.type()) {
    case nlohmann::ordered_json::value_t::null: return Value(None{});
    case nlohmann::ordered_json::value_t::boolean: return Value(j.get<bool>());
    case nlohmann::ordered_json::value_t::number_integer: return Value(j.get<int64_t>());
    case nlohmann::ordered_json::value_t::number_unsigned: {
      uint64_t u = j.get<uint64_t>();
      if (u <= static_cast<uint64_t>(INT64_MAX)) return Value(static_cast<int64_t>(u));
      return Value(static_cast<double>(u));
    }
    case nlohmann::ordered_json::value_t::number_float: return Value(j.get<double>());
    case nlohmann::ordered_json::value_t::string: return Value(j.get<std::string>());
    case nlohmann::ordered_json::value_t::array: {
      std::vector<Value> items;
      items.reserve(j.size());
      for (const auto& e : j) {
        auto item = FromJsonAt(e, depth + 1);
        if (!item.ok()) return item.status();
        items.push_back(*std::move(item));
      }
      return Value::MakeList(std::move(items));
    }
    case nlohmann::ordered_json::value_t::object: {
      Dict d;
      d.entries.reserve(j.size());
      for (auto it = j.begin(); it != j.end(); ++it) {
        auto item = FromJsonAt(it.value(), depth + 1);
        if (!item.ok()) return item.status();
        d.entries.emplace_back(Value(it.key()), *std::move(item));
      }
      return Value::MakeDict(std::move(d));
    }
    default:
      return absl::InvalidArgumentError("binary or discarded JSON values are not supported");
  }
}

absl::StatusOr<nlohmann::ordered_json> ToJsonAt(const Value& v, int depth) {
  if (depth > kMaxDepth) return TooDeep();
  switch (v.kind()) {
    case Value::Kind::kNone: return nlohmann::ordered_json(nullptr);
    case Value::Kind::kBool: return nlohmann::ordered_json(v.as_bool());
    case Value::Kind::kInt: return nlohmann::ordered_json(v.as_int());
    case Value::Kind::kFloat: return nlohmann::ordered_json(v.as_float());
    case Value::Kind::kString: return nlohmann::ordered_json(v.as_string());
    case Value::Kind::kList: {
      auto out = nlohmann::ordered_json::array();
      for (const auto& e : v.as_list().items) {
        auto item = ToJsonAt(e, depth + 1);
        if (!item.ok()) return item.status();
        out.push_back(*std::move(item));
      }
      return out;
    }
    case Value::Kind::kDict: {
      auto out = nlohmann::ordered_json::object();
      for (const auto& [k, e] : v.as_dict().entries) {
        auto key = KeyString(k);
        if (!key.ok()) return key.status();
        auto item = ToJsonAt(e, depth + 1);
        if (!item.ok()) return item.status();
        out[*key] = *std::move(item);
      }
      return out;
    }
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("Object of type ", v.TypeName(), " is not JSON serializable"));
  }
}

}  // namespace

absl::StatusOr<Value> FromJson(const nlohmann::ordered_json& j) { return FromJsonAt(j, 0); }
absl::StatusOr<nlohmann::ordered_json> ToJson(const Value& v) { return ToJsonAt(v, 0); }

}  // namespace quarry::chat

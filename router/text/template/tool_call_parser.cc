#include "router/text/template/tool_call_parser.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace quarry::chat {
namespace {

constexpr std::string_view kOpen = "<tool_call>";
constexpr std::string_view kClose = "</tool_call>";

bool IsSpace(char c) { return c == ' ' || c == '\n' || c == '\t' || c == '\r' || c == '\f' || c == '\v'; }

// Length of the longest suffix of `s` that is a proper prefix of `tag`.
size_t PartialTagSuffix(std::string_view s, std::string_view tag) {
  for (size_t n = std::min(s.size(), tag.size() - 1); n > 0; --n) {
    if (s.substr(s.size() - n) == tag.substr(0, n)) return n;
  }
  return 0;
}

std::string Dump(const nlohmann::ordered_json& j) {
  return j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

}  // namespace

void ToolCallStreamParser::EmitText(std::string_view text, ToolCallDelta& out) {
  if (text.empty()) return;
  if (after_call_) {
    if (std::all_of(text.begin(), text.end(), IsSpace)) {
      pending_ws_.append(text);
      return;
    }
    out.content += pending_ws_;
    pending_ws_.clear();
    after_call_ = false;
  }
  out.content.append(text);
}

void ToolCallStreamParser::CloseBlock(std::string_view body, ToolCallDelta& out) {
  auto j = nlohmann::ordered_json::parse(body, nullptr, false);
  std::string error;
  if (j.is_discarded()) {
    error = "tool call is not valid JSON";
  } else if (!j.is_object()) {
    error = "tool call is not a JSON object";
  } else if (!j.contains("name") || !j["name"].is_string()) {
    error = "tool call has no string \"name\"";
  } else if (j.contains("arguments") && !j["arguments"].is_object() && !j["arguments"].is_string()) {
    error = "tool call \"arguments\" is neither an object nor a string";
  }
  if (!error.empty()) {
    pending_ws_.clear();
    after_call_ = false;
    out.content += absl::StrCat(std::string(kOpen), std::string(body), std::string(kClose));
    out.errors.push_back(absl::StrCat(error, " (block kept as content)"));
    return;
  }
  ParsedToolCall call;
  call.id = absl::StrCat(id_prefix_, next_id_++);
  call.name = j["name"].get<std::string>();
  if (!j.contains("arguments")) {
    call.arguments = "{}";
  } else if (j["arguments"].is_string()) {
    call.arguments = j["arguments"].get<std::string>();
  } else {
    call.arguments = Dump(j["arguments"]);
  }
  out.tool_calls.push_back(std::move(call));
  pending_ws_.clear();
  after_call_ = true;
}

void ToolCallStreamParser::Process(ToolCallDelta& out, bool final) {
  while (true) {
    if (in_call_) {
      size_t p = buf_.find(kClose);
      if (p == std::string::npos) {
        if (final) {
          out.content += absl::StrCat(std::string(kOpen), buf_);
          out.errors.push_back("unterminated <tool_call> block (kept as content)");
          buf_.clear();
          in_call_ = false;
        }
        return;
      }
      CloseBlock(std::string_view(buf_).substr(0, p), out);
      buf_.erase(0, p + kClose.size());
      in_call_ = false;
      continue;
    }
    size_t p = buf_.find(kOpen);
    if (p != std::string::npos) {
      std::string_view before = std::string_view(buf_).substr(0, p);
      if (after_call_ && std::all_of(before.begin(), before.end(), IsSpace)) {
        pending_ws_.clear();  // whitespace between two blocks
      } else {
        EmitText(before, out);
      }
      buf_.erase(0, p + kOpen.size());
      in_call_ = true;
      continue;
    }
    size_t hold = final ? 0 : PartialTagSuffix(buf_, kOpen);
    EmitText(std::string_view(buf_).substr(0, buf_.size() - hold), out);
    buf_.erase(0, buf_.size() - hold);
    if (final) pending_ws_.clear();
    return;
  }
}

ToolCallDelta ToolCallStreamParser::Push(std::string_view text) {
  ToolCallDelta out;
  buf_.append(text);
  Process(out, false);
  return out;
}

ToolCallDelta ToolCallStreamParser::Finish() {
  ToolCallDelta out;
  Process(out, true);
  return out;
}

ToolCallDelta ParseToolCalls(std::string_view text, std::string id_prefix) {
  ToolCallStreamParser parser(std::move(id_prefix));
  ToolCallDelta out = parser.Push(text);
  ToolCallDelta tail = parser.Finish();
  out.content += tail.content;
  for (auto& c : tail.tool_calls) out.tool_calls.push_back(std::move(c));
  for (auto& e : tail.errors) out.errors.push_back(std::move(e));
  return out;
}

}  // namespace quarry::chat

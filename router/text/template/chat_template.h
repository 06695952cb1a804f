// ChatTemplate: the router's entry point for turning an OpenAI-style conversation into the model's prompt by
// rendering the model's own Jinja chat template exactly as transformers does (see docs/chat-template.md).
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "router/text/template/interpreter.h"

namespace quarry::chat {

struct RenderInput {
  // Array of message objects: {"role", "content" (string, null or [{"type": "text", "text": ...}, ...]),
  // "tool_calls": [{"id"?, "type": "function", "function": {"name", "arguments" (object or string)}}],
  // "tool_call_id", "name", ...}. Keys keep their order (nlohmann::ordered_json).
  nlohmann::ordered_json messages = nlohmann::ordered_json::array();
  std::optional<nlohmann::ordered_json> tools;      // list of tool schemas; nullopt renders as None
  std::optional<nlohmann::ordered_json> documents;  // list of documents; nullopt renders as None
  bool add_generation_prompt = false;
  // Extra template variables (e.g. {"available_tools": [...]} or thinking flags); they override the special
  // tokens (bos_token, eos_token, ...) read from tokenizer_config.json. Must be an object or null.
  nlohmann::ordered_json extra = nlohmann::ordered_json::object();
};

class ChatTemplate {
 public:
  // Parses template source. INVALID_ARGUMENT "chat template line N: ..." on syntax errors.
  static absl::StatusOr<ChatTemplate> FromString(std::string_view source);
  // Reads a .jinja file (NOT_FOUND if missing).
  static absl::StatusOr<ChatTemplate> FromFile(const std::string& path);
  // Reads "chat_template" (a string, or a list of {"name", "template"}: the one named "default") and the
  // special tokens (bos_token, eos_token, unk_token, pad_token, ...) that transformers passes as variables.
  static absl::StatusOr<ChatTemplate> FromTokenizerConfig(const std::string& path);

  // Renders the prompt. INVALID_ARGUMENT for bad input shapes or template errors (naming the template line;
  // raise_exception messages included); RESOURCE_EXHAUSTED when a limit of limits() is hit.
  absl::StatusOr<std::string> Render(const RenderInput& input) const;

  const std::string& source() const { return *source_; }
  const RenderLimits& limits() const { return limits_; }
  void set_limits(const RenderLimits& limits) { limits_ = limits; }
  // Variables passed to every render (special tokens from tokenizer_config.json).
  const nlohmann::ordered_json& default_variables() const { return defaults_; }

 private:
  struct Parsed;
  ChatTemplate() = default;

  std::shared_ptr<const std::string> source_;
  std::shared_ptr<const Parsed> parsed_;
  nlohmann::ordered_json defaults_ = nlohmann::ordered_json::object();
  RenderLimits limits_;
};

}  // namespace quarry::chat

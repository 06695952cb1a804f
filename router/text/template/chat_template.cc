#include "router/text/template/chat_template.h"

#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "kernels/status_macros.h"
#include "router/text/template/json.h"
#include "router/text/template/parser.h"

namespace quarry::chat {

struct ChatTemplate::Parsed {
  Body body;
};

namespace {

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return absl::DataLossError(absl::StrCat("error reading ", path));
  return ss.str();
}

absl::Status CheckList(const nlohmann::ordered_json& j, const char* field) {
  if (!j.is_array()) return absl::InvalidArgumentError(absl::StrCat(field, " must be a JSON array"));
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<ChatTemplate> ChatTemplate::FromString(std::string_view source) {
  ChatTemplate t;
  auto parsed = std::make_shared<Parsed>();
  QUARRY_ASSIGN_OR_RETURN(parsed->body, ParseTemplate(source));
  t.parsed_ = std::move(parsed);
  t.source_ = std::make_shared<const std::string>(source);
  return t;
}

absl::StatusOr<ChatTemplate> ChatTemplate::FromFile(const std::string& path) {
  QUARRY_ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  return FromString(text);
}

absl::StatusOr<ChatTemplate> ChatTemplate::FromTokenizerConfig(const std::string& path) {
  QUARRY_ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  auto config = nlohmann::ordered_json::parse(text, nullptr, false);
  if (config.is_discarded() || !config.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": not a JSON object"));
  }
  auto it = config.find("chat_template");
  if (it == config.end()) return absl::InvalidArgumentError(absl::StrCat(path, ": no \"chat_template\""));
  std::string source;
  if (it->is_string()) {
    source = it->get<std::string>();
  } else if (it->is_array()) {
    for (const auto& entry : *it) {
      if (entry.is_object() && entry.value("name", "") == "default" && entry.contains("template") &&
          entry["template"].is_string()) {
        source = entry["template"].get<std::string>();
      }
    }
    if (source.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": \"chat_template\" has no template named default"));
    }
  } else {
    return absl::InvalidArgumentError(absl::StrCat(path, ": \"chat_template\" must be a string or a list"));
  }
  absl::StatusOr<ChatTemplate> t = FromString(source);
  if (!t.ok()) return absl::Status(t.status().code(), absl::StrCat(path, ": ", t.status().message()));
  for (auto e = config.begin(); e != config.end(); ++e) {
    const std::string& key = e.key();
    bool special = key.size() > 6 && key.compare(key.size() - 6, 6, "_token") == 0;
    if (special && e->is_string()) t->defaults_[key] = *e;
    if (special && e->is_object() && e->contains("content")) t->defaults_[key] = (*e)["content"];
    if (key == "additional_special_tokens" && e->is_array()) t->defaults_[key] = *e;
  }
  return t;
}

absl::StatusOr<std::string> ChatTemplate::Render(const RenderInput& input) const {
  QUARRY_RETURN_IF_ERROR(CheckList(input.messages, "messages"));
  for (const auto& m : input.messages) {
    if (!m.is_object()) return absl::InvalidArgumentError("messages must be a JSON array of objects");
  }
  if (input.tools && !input.tools->is_null()) QUARRY_RETURN_IF_ERROR(CheckList(*input.tools, "tools"));
  if (input.documents && !input.documents->is_null()) {
    QUARRY_RETURN_IF_ERROR(CheckList(*input.documents, "documents"));
  }
  if (!input.extra.is_null() && !input.extra.is_object()) {
    return absl::InvalidArgumentError("extra template variables must be a JSON object");
  }
  Dict globals;
  for (const auto* vars : {&defaults_, &input.extra}) {
    if (vars->is_null()) continue;
    for (auto e = vars->begin(); e != vars->end(); ++e) {
      QUARRY_ASSIGN_OR_RETURN(Value v, FromJson(e.value()));
      globals.Set(Value(e.key()), std::move(v));
    }
  }
  QUARRY_ASSIGN_OR_RETURN(Value messages, FromJson(input.messages));
  globals.Set(Value("messages"), std::move(messages));
  Value tools = Value(None{}), documents = Value(None{});
  if (input.tools) {
    QUARRY_ASSIGN_OR_RETURN(tools, FromJson(*input.tools));
  }
  if (input.documents) {
    QUARRY_ASSIGN_OR_RETURN(documents, FromJson(*input.documents));
  }
  globals.Set(Value("tools"), std::move(tools));
  globals.Set(Value("documents"), std::move(documents));
  globals.Set(Value("add_generation_prompt"), Value(input.add_generation_prompt));
  Interpreter interpreter(limits_);
  return interpreter.Render(parsed_->body, globals);
}

}  // namespace quarry::chat

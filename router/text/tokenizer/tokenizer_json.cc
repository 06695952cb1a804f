// Parsing of tokenizer.json / tokenizer_config.json (see tokenizer_json.h).
#include "router/text/tokenizer/tokenizer_json.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "kernels/status_macros.h"
#include "nlohmann/json.hpp"

namespace quarry {
namespace {

using Json = nlohmann::json;

absl::Status Bad(const std::string& source, const std::string& where, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat(source, ": ", where, ": ", what));
}

absl::StatusOr<Json> ParseJson(std::string_view text, const std::string& source) {
  Json j = Json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    // Re-parse with exceptions only to obtain the position of the error.
    std::string detail = "not valid JSON";
    try {
      Json unused = Json::parse(text.begin(), text.end());
      (void)unused;
    } catch (const Json::exception& e) {
      detail = absl::StrCat("not valid JSON (", e.what(), ")");
    }
    return absl::InvalidArgumentError(absl::StrCat(source, ": ", detail));
  }
  if (!j.is_object()) return absl::InvalidArgumentError(absl::StrCat(source, ": top level must be a JSON object"));
  return j;
}

absl::Status OptBool(const Json& obj, const char* key, const std::string& source, const std::string& where,
                     bool* out) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return absl::OkStatus();
  if (!it->is_boolean()) return Bad(source, absl::StrCat(where, ".", key), absl::StrCat("must be a boolean, got ", it->dump()));
  *out = it->get<bool>();
  return absl::OkStatus();
}

absl::Status ParseAddedTokens(const Json& root, TokenizerSpec* spec) {
  auto it = root.find("added_tokens");
  if (it == root.end() || it->is_null()) return absl::OkStatus();
  if (!it->is_array()) return Bad(spec->source, "added_tokens", "must be an array");
  for (size_t i = 0; i < it->size(); ++i) {
    const Json& t = (*it)[i];
    const std::string where = absl::StrCat("added_tokens[", i, "]");
    if (!t.is_object()) return Bad(spec->source, where, "must be an object");
    AddedTokenSpec a;
    auto id = t.find("id");
    if (id == t.end() || !id->is_number_integer() || id->get<int64_t>() < 0 || id->get<int64_t>() > INT32_MAX) {
      return Bad(spec->source, where, "needs a non-negative integer 'id'");
    }
    a.id = static_cast<int32_t>(id->get<int64_t>());
    auto content = t.find("content");
    if (content == t.end() || !content->is_string() || content->get<std::string>().empty()) {
      return Bad(spec->source, where, "needs a non-empty string 'content'");
    }
    a.content = content->get<std::string>();
    QUARRY_RETURN_IF_ERROR(OptBool(t, "special", spec->source, where, &a.special));
    QUARRY_RETURN_IF_ERROR(OptBool(t, "lstrip", spec->source, where, &a.lstrip));
    QUARRY_RETURN_IF_ERROR(OptBool(t, "rstrip", spec->source, where, &a.rstrip));
    QUARRY_RETURN_IF_ERROR(OptBool(t, "single_word", spec->source, where, &a.single_word));
    QUARRY_RETURN_IF_ERROR(OptBool(t, "normalized", spec->source, where, &a.normalized));
    spec->added_tokens.push_back(std::move(a));
  }
  return absl::OkStatus();
}

absl::Status ParsePreTokenizer(const Json& p, const std::string& where, TokenizerSpec* spec) {
  if (!p.is_object()) return Bad(spec->source, where, "must be an object");
  auto type_it = p.find("type");
  if (type_it == p.end() || !type_it->is_string()) return Bad(spec->source, where, "needs a string 'type'");
  const std::string type = type_it->get<std::string>();
  if (type == "Sequence") {
    auto list = p.find("pretokenizers");
    if (list == p.end() || !list->is_array()) return Bad(spec->source, where, "Sequence needs 'pretokenizers'");
    for (size_t i = 0; i < list->size(); ++i) {
      QUARRY_RETURN_IF_ERROR(ParsePreTokenizer((*list)[i], absl::StrCat(where, ".pretokenizers[", i, "]"), spec));
    }
    return absl::OkStatus();
  }
  PreTokenizerStep step;
  if (type == "ByteLevel") {
    step.kind = PreTokenizerStep::Kind::kByteLevel;
    QUARRY_RETURN_IF_ERROR(OptBool(p, "add_prefix_space", spec->source, where, &step.add_prefix_space));
    QUARRY_RETURN_IF_ERROR(OptBool(p, "use_regex", spec->source, where, &step.use_regex));
    spec->pre_tokenizer.push_back(std::move(step));
    return absl::OkStatus();
  }
  if (type != "Split") {
    return Bad(spec->source, where, absl::StrCat("pre-tokenizer type '", type,
                                                 "' is not supported (Split, ByteLevel, Sequence)"));
  }
  step.kind = PreTokenizerStep::Kind::kSplit;
  auto pat = p.find("pattern");
  if (pat == p.end() || !pat->is_object()) return Bad(spec->source, where, "Split needs an object 'pattern'");
  if (auto r = pat->find("Regex"); r != pat->end() && r->is_string()) {
    step.pattern = r->get<std::string>();
    step.pattern_is_regex = true;
  } else if (auto s = pat->find("String"); s != pat->end() && s->is_string()) {
    step.pattern = s->get<std::string>();
    step.pattern_is_regex = false;
  } else {
    return Bad(spec->source, where, "Split pattern needs a string 'Regex' or 'String'");
  }
  if (step.pattern.empty()) return Bad(spec->source, where, "Split pattern is empty");
  auto beh = p.find("behavior");
  const std::string b = (beh != p.end() && beh->is_string()) ? beh->get<std::string>() : "";
  if (b == "Removed") step.behavior = SplitBehavior::kRemoved;
  else if (b == "Isolated") step.behavior = SplitBehavior::kIsolated;
  else if (b == "MergedWithPrevious") step.behavior = SplitBehavior::kMergedWithPrevious;
  else if (b == "MergedWithNext") step.behavior = SplitBehavior::kMergedWithNext;
  else if (b == "Contiguous") step.behavior = SplitBehavior::kContiguous;
  else return Bad(spec->source, where, absl::StrCat("unknown Split behavior '", b, "'"));
  QUARRY_RETURN_IF_ERROR(OptBool(p, "invert", spec->source, where, &step.invert));
  spec->pre_tokenizer.push_back(std::move(step));
  return absl::OkStatus();
}

absl::Status ParseModel(const Json& root, TokenizerSpec* spec) {
  auto mit = root.find("model");
  if (mit == root.end() || !mit->is_object()) return Bad(spec->source, "model", "is missing or not an object");
  const Json& m = *mit;
  if (auto t = m.find("type"); t != m.end() && !(t->is_string() && t->get<std::string>() == "BPE")) {
    return Bad(spec->source, "model.type", absl::StrCat("model type ", t->dump(), " is not supported (only BPE)"));
  }
  auto vit = m.find("vocab");
  if (vit == m.end() || !vit->is_object() || vit->empty()) {
    return Bad(spec->source, "model.vocab", "is missing or not a non-empty object of token -> id");
  }
  spec->vocab.reserve(vit->size());
  for (auto it = vit->begin(); it != vit->end(); ++it) {
    if (!it.value().is_number_integer() || it.value().get<int64_t>() < 0 || it.value().get<int64_t>() > INT32_MAX) {
      return Bad(spec->source, "model.vocab", absl::StrCat("token '", it.key(), "' has a bad id ", it.value().dump()));
    }
    spec->vocab.emplace_back(it.key(), static_cast<int32_t>(it.value().get<int64_t>()));
  }
  auto merges = m.find("merges");
  if (merges == m.end() || !merges->is_array()) return Bad(spec->source, "model.merges", "is missing or not an array");
  spec->merges.reserve(merges->size());
  for (size_t i = 0; i < merges->size(); ++i) {
    const Json& e = (*merges)[i];
    if (e.is_string()) {
      const std::string& s = e.get_ref<const std::string&>();
      const size_t sp = s.find(' ');
      if (sp == std::string::npos || sp == 0 || sp + 1 == s.size() || s.find(' ', sp + 1) != std::string::npos) {
        return Bad(spec->source, absl::StrCat("model.merges[", i, "]"),
                   absl::StrCat("'", s, "' is not two tokens separated by one space"));
      }
      spec->merges.emplace_back(s.substr(0, sp), s.substr(sp + 1));
    } else if (e.is_array() && e.size() == 2 && e[0].is_string() && e[1].is_string()) {
      spec->merges.emplace_back(e[0].get<std::string>(), e[1].get<std::string>());
    } else {
      return Bad(spec->source, absl::StrCat("model.merges[", i, "]"),
                 absl::StrCat("must be \"a b\" or [\"a\", \"b\"], got ", e.dump()));
    }
  }
  QUARRY_RETURN_IF_ERROR(OptBool(m, "ignore_merges", spec->source, "model", &spec->ignore_merges));
  bool byte_fallback = false;
  QUARRY_RETURN_IF_ERROR(OptBool(m, "byte_fallback", spec->source, "model", &byte_fallback));
  if (byte_fallback) return Bad(spec->source, "model.byte_fallback", "true is not supported (byte-level BPE only)");
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    auto it = m.find(key);
    if (it != m.end() && !it->is_null() && !(it->is_string() && it->get<std::string>().empty())) {
      return Bad(spec->source, absl::StrCat("model.", key), absl::StrCat("value ", it->dump(), " is not supported"));
    }
  }
  if (auto d = m.find("dropout"); d != m.end() && !d->is_null() && !(d->is_number() && d->get<double>() == 0.0)) {
    return Bad(spec->source, "model.dropout", "BPE dropout is not supported");
  }
  if (auto u = m.find("unk_token"); u != m.end() && u->is_string()) spec->unk_token = u->get<std::string>();
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<TokenizerSpec> ParseTokenizerJson(std::string_view text, std::string_view source) {
  TokenizerSpec spec;
  spec.source = std::string(source);
  QUARRY_ASSIGN_OR_RETURN(Json root, ParseJson(text, spec.source));
  QUARRY_RETURN_IF_ERROR(ParseModel(root, &spec));
  QUARRY_RETURN_IF_ERROR(ParseAddedTokens(root, &spec));
  if (auto n = root.find("normalizer"); n != root.end() && !n->is_null()) {
    return Bad(spec.source, "normalizer", absl::StrCat("normalizers are not supported, got ", n->dump().substr(0, 80)));
  }
  auto pre = root.find("pre_tokenizer");
  if (pre != root.end() && !pre->is_null()) QUARRY_RETURN_IF_ERROR(ParsePreTokenizer(*pre, "pre_tokenizer", &spec));
  bool byte_level = false;
  for (const PreTokenizerStep& s : spec.pre_tokenizer) byte_level |= s.kind == PreTokenizerStep::Kind::kByteLevel;
  if (!byte_level) return Bad(spec.source, "pre_tokenizer", "has no ByteLevel step (only byte-level BPE is supported)");
  if (auto d = root.find("decoder"); d != root.end() && !d->is_null()) {
    auto t = d->find("type");
    if (!d->is_object() || t == d->end() || !t->is_string() || t->get<std::string>() != "ByteLevel") {
      return Bad(spec.source, "decoder", absl::StrCat("only the ByteLevel decoder is supported, got ",
                                                      d->dump().substr(0, 80)));
    }
  }
  return spec;
}

absl::StatusOr<TokenizerConfig> ParseTokenizerConfig(std::string_view text, std::string_view source) {
  const std::string src(source);
  QUARRY_ASSIGN_OR_RETURN(Json root, ParseJson(text, src));
  TokenizerConfig c;
  auto token = [&](const char* key, std::string* out) -> absl::Status {
    auto it = root.find(key);
    if (it == root.end() || it->is_null()) return absl::OkStatus();
    if (it->is_string()) {
      *out = it->get<std::string>();
    } else if (it->is_object() && it->contains("content") && (*it)["content"].is_string()) {
      *out = (*it)["content"].get<std::string>();  // AddedToken dict form
    } else {
      return Bad(src, key, absl::StrCat("must be a string or {\"content\": ...}, got ", it->dump()));
    }
    return absl::OkStatus();
  };
  QUARRY_RETURN_IF_ERROR(token("bos_token", &c.bos_token));
  QUARRY_RETURN_IF_ERROR(token("eos_token", &c.eos_token));
  QUARRY_RETURN_IF_ERROR(token("pad_token", &c.pad_token));
  QUARRY_RETURN_IF_ERROR(token("unk_token", &c.unk_token));
  QUARRY_RETURN_IF_ERROR(OptBool(root, "add_bos_token", src, "config", &c.add_bos_token));
  QUARRY_RETURN_IF_ERROR(OptBool(root, "add_eos_token", src, "config", &c.add_eos_token));
  QUARRY_RETURN_IF_ERROR(
      OptBool(root, "clean_up_tokenization_spaces", src, "config", &c.clean_up_tokenization_spaces));
  if (auto it = root.find("model_max_length"); it != root.end() && it->is_number()) {
    const double v = it->get<double>();
    c.model_max_length = v > 0 && v < 9e15 ? static_cast<int64_t>(v) : 0;  // HF writes 1e30 for "unbounded"
  }
  if (auto it = root.find("chat_template"); it != root.end() && !it->is_null()) {
    if (it->is_string()) {
      c.chat_template = it->get<std::string>();
    } else if (it->is_array()) {
      for (size_t i = 0; i < it->size(); ++i) {
        const Json& e = (*it)[i];
        if (!e.is_object() || !e.contains("name") || !e.contains("template") || !e["name"].is_string() ||
            !e["template"].is_string()) {
          return Bad(src, absl::StrCat("chat_template[", i, "]"), "must be {\"name\": ..., \"template\": ...}");
        }
        c.named_chat_templates.emplace_back(e["name"].get<std::string>(), e["template"].get<std::string>());
        if (e["name"].get<std::string>() == "default") c.chat_template = e["template"].get<std::string>();
      }
    } else {
      return Bad(src, "chat_template", "must be a string or a list of named templates");
    }
  }
  return c;
}

absl::StatusOr<std::string> ReadTokenizerFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    const int err = errno;
    if (err == ENOENT) return absl::NotFoundError(absl::StrCat(path, ": no such file"));
    return absl::InvalidArgumentError(absl::StrCat(path, ": cannot open (", std::strerror(err), ")"));
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return absl::InvalidArgumentError(absl::StrCat(path, ": read error"));
  return std::move(ss).str();
}

}  // namespace quarry

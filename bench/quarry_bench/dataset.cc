// Datasets for quarry-bench (see dataset.h).
#include "bench/quarry_bench/dataset.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <random>
#include <sstream>

#include "absl/strings/str_cat.h"

namespace quarry::bench {
namespace {

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open dataset file ", path));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Adds random picks (with replacement) until there are n samples (vLLM maybe_oversample_requests).
template <typename T>
void Oversample(std::vector<T>* samples, int n, std::mt19937_64* rng) {
  if (samples->empty()) return;
  const size_t have = samples->size();
  std::uniform_int_distribution<size_t> pick(0, have - 1);
  while (static_cast<int>(samples->size()) < n) samples->push_back((*samples)[pick(*rng)]);
}

int Clamp(long long v) { return static_cast<int>(std::min<long long>(v, 1 << 30)); }

}  // namespace

bool IsValidSequence(int prompt_len, int output_len, bool skip_min_output_len_check) {
  const bool prompt_too_short = prompt_len < 4;
  const bool output_too_short = !skip_min_output_len_check && output_len < 4;
  const bool prompt_too_long = prompt_len > 1024;
  const bool combined_too_long = prompt_len + output_len > 2048;
  return !(prompt_too_short || output_too_short || prompt_too_long || combined_too_long);
}

absl::StatusOr<std::vector<SampleRequest>> RandomDataset(const Tokenizer& tok, const RandomOptions& o, int n,
                                                         RandomStats* stats) {
  if (!(o.range_ratio >= 0 && o.range_ratio < 1)) {
    return absl::InvalidArgumentError(absl::StrCat("--random-range-ratio must be in [0, 1), got ", o.range_ratio));
  }
  if (o.input_len < 0 || o.output_len < 1 || o.prefix_len < 0) {
    return absl::InvalidArgumentError(absl::StrCat("random lengths: input ", o.input_len, " (>= 0), output ",
                                                   o.output_len, " (>= 1), prefix ", o.prefix_len, " (>= 0)"));
  }
  std::vector<int32_t> allowed;  // ordinary vocabulary: no added or special tokens
  for (int32_t id = 0; id < tok.vocab_size(); ++id) {
    if (!tok.IsAddedToken(id) && !tok.IsSpecial(id) && tok.IdToToken(id).has_value()) allowed.push_back(id);
  }
  if (allowed.empty()) return absl::InvalidArgumentError("the tokenizer has no ordinary tokens");
  std::mt19937_64 rng(o.seed);
  const int in_lo = static_cast<int>(std::floor(o.input_len * (1 - o.range_ratio)));
  const int in_hi = static_cast<int>(std::ceil(o.input_len * (1 + o.range_ratio)));
  const int out_lo = std::max(1, static_cast<int>(std::floor(o.output_len * (1 - o.range_ratio))));
  const int out_hi = static_cast<int>(std::ceil(o.output_len * (1 + o.range_ratio)));
  std::uniform_int_distribution<int> in_dist(in_lo, in_hi), out_dist(out_lo, out_hi);
  std::uniform_int_distribution<int32_t> offset_dist(0, tok.vocab_size() - 1);
  std::uniform_int_distribution<size_t> allowed_dist(0, allowed.size() - 1);
  std::vector<int> input_lens(n), output_lens(n), offsets(n);
  for (int& v : input_lens) v = in_dist(rng);
  for (int& v : output_lens) v = out_dist(rng);
  for (int& v : offsets) v = offset_dist(rng);
  std::vector<int32_t> prefix(o.prefix_len);
  for (int32_t& id : prefix) id = allowed[allowed_dist(rng)];

  std::vector<SampleRequest> out;
  out.reserve(n);
  for (int i = 0; i < n; ++i) {
    std::vector<int32_t> seq = prefix;
    for (int k = 0; k < input_lens[i]; ++k) {
      seq.push_back(allowed[(static_cast<size_t>(offsets[i]) + i + k) % allowed.size()]);
    }
    const size_t target = o.prefix_len + input_lens[i];
    // vLLM's gen_prompt_decode_to_target_len: decode, re-encode, pad or truncate, up to 10 retries.
    std::string prompt;
    for (int tries = 10;; --tries) {
      auto text = tok.Decode(seq, /*skip_special_tokens=*/false);
      if (!text.ok()) return text.status();
      prompt = std::move(*text);
      auto ids = tok.Encode(prompt, {.parse_special = true});
      if (!ids.ok()) return ids.status();
      seq = std::move(*ids);
      if (tries <= 0) {
        if (stats) stats->token_mismatch += std::abs(static_cast<int>(seq.size()) - static_cast<int>(target));
        break;
      }
      if (seq.size() == target) break;
      if (seq.size() < target) {
        while (seq.size() < target) seq.push_back(allowed[allowed_dist(rng)]);
      } else {
        seq.resize(target);
      }
    }
    SampleRequest r;
    r.prompt = std::move(prompt);
    r.prompt_len = static_cast<int>(seq.size());
    r.prompt_ids = std::move(seq);
    r.expected_output_len = output_lens[i];
    out.push_back(std::move(r));
  }
  return out;
}

absl::StatusOr<std::vector<SampleRequest>> ShareGptDataset(const std::string& path, const Tokenizer& tok,
                                                           const FileOptions& o, int n) {
  auto text = ReadFile(path);
  if (!text.ok()) return text.status();
  return ShareGptFromJson(*text, path, tok, o, n);
}

absl::StatusOr<std::vector<SampleRequest>> ShareGptFromJson(std::string_view text, const std::string& name,
                                                            const Tokenizer& tok, const FileOptions& o, int n) {
  nlohmann::json data = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (data.is_discarded()) return absl::InvalidArgumentError(absl::StrCat(name, ": not valid JSON"));
  if (!data.is_array()) return absl::InvalidArgumentError(absl::StrCat(name, ": expected a JSON array of conversations"));
  std::vector<std::pair<std::string, std::string>> convs;  // first two turns of entries with >= 2 turns
  for (const nlohmann::json& e : data) {
    if (!e.is_object() || !e.contains("conversations") || !e["conversations"].is_array()) continue;
    const nlohmann::json& c = e["conversations"];
    if (c.size() < 2) continue;
    if (!c[0].is_object() || !c[1].is_object() || !c[0].contains("value") || !c[1].contains("value") ||
        !c[0]["value"].is_string() || !c[1]["value"].is_string()) {
      continue;
    }
    convs.emplace_back(c[0]["value"].get<std::string>(), c[1]["value"].get<std::string>());
  }
  std::mt19937_64 rng(o.seed);
  if (o.shuffle) std::shuffle(convs.begin(), convs.end(), rng);
  std::vector<SampleRequest> out;
  for (const auto& [prompt, completion] : convs) {
    if (static_cast<int>(out.size()) >= n) break;
    auto p = tok.Encode(prompt, {.parse_special = true});
    if (!p.ok()) return p.status();
    int out_len = 0;
    if (o.output_len) {
      out_len = *o.output_len;
    } else {
      auto c = tok.Encode(completion, {.parse_special = true});
      if (!c.ok()) return c.status();
      out_len = static_cast<int>(c->size());
    }
    const int prompt_len = static_cast<int>(p->size());
    if (!IsValidSequence(prompt_len, out_len, o.output_len.has_value())) continue;
    SampleRequest r;
    r.prompt = prompt;
    r.prompt_len = prompt_len;
    r.expected_output_len = out_len;
    out.push_back(std::move(r));
  }
  if (out.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": no conversation passed the filters (>= 2 turns, prompt ",
                                                   "4..1024 tokens, output >= 4, prompt + output <= 2048)"));
  }
  Oversample(&out, n, &rng);
  return out;
}

absl::StatusOr<std::vector<SampleRequest>> CustomDataset(const std::string& path, const Tokenizer& tok,
                                                         const FileOptions& o, int n) {
  auto text = ReadFile(path);
  if (!text.ok()) return text.status();
  return CustomFromJsonl(*text, path, tok, o, n);
}

namespace {

// Calls `fn(line_number, object)` for every non-empty line; INVALID_ARGUMENT "NAME:LINE: ..." otherwise.
template <typename Fn>
absl::Status ForEachJsonLine(std::string_view text, const std::string& name, Fn fn) {
  size_t pos = 0;
  int line_no = 0;
  while (pos <= text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(pos, end - pos);
    ++line_no;
    pos = end + 1;
    if (line.find_first_not_of(" \t\r") == std::string_view::npos) {
      if (end == text.size()) break;
      continue;
    }
    nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) return absl::InvalidArgumentError(absl::StrCat(name, ":", line_no, ": not valid JSON"));
    if (!j.is_object()) return absl::InvalidArgumentError(absl::StrCat(name, ":", line_no, ": expected a JSON object"));
    absl::Status st = fn(line_no, j);
    if (!st.ok()) return st;
    if (end == text.size()) break;
  }
  return absl::OkStatus();
}

absl::StatusOr<int> OutputTokensField(const nlohmann::json& j, const std::string& name, int line_no, int dflt) {
  for (const char* key : {"output_tokens", "max_tokens"}) {
    if (!j.contains(key)) continue;
    if (!j[key].is_number_integer() || j[key].get<long long>() < 1) {
      return absl::InvalidArgumentError(absl::StrCat(name, ":", line_no, ": \"", key, "\" must be an integer >= 1"));
    }
    return Clamp(j[key].get<long long>());
  }
  return dflt;
}

}  // namespace

absl::StatusOr<std::vector<SampleRequest>> CustomFromJsonl(std::string_view text, const std::string& name,
                                                           const Tokenizer& tok, const FileOptions& o, int n) {
  std::vector<SampleRequest> all;
  absl::Status st = ForEachJsonLine(text, name, [&](int line_no, const nlohmann::json& j) -> absl::Status {
    if (!j.contains("prompt") || !j["prompt"].is_string()) {
      return absl::InvalidArgumentError(absl::StrCat(name, ":", line_no, ": missing string field \"prompt\""));
    }
    auto out_len = OutputTokensField(j, name, line_no, o.output_len.value_or(256));
    if (!out_len.ok()) return out_len.status();
    SampleRequest r;
    r.prompt = j["prompt"].get<std::string>();
    auto ids = tok.Encode(r.prompt, {.parse_special = true});
    if (!ids.ok()) return ids.status();
    r.prompt_len = static_cast<int>(ids->size());
    r.expected_output_len = *out_len;
    all.push_back(std::move(r));
    return absl::OkStatus();
  });
  if (!st.ok()) return st;
  if (all.empty()) return absl::InvalidArgumentError(absl::StrCat(name, ": no prompts"));
  std::mt19937_64 rng(o.seed);
  if (o.shuffle) std::shuffle(all.begin(), all.end(), rng);
  if (static_cast<int>(all.size()) > n) all.resize(n);
  Oversample(&all, n, &rng);
  return all;
}

namespace {

// Our tool form from ours or OpenAI's; INVALID_ARGUMENT names the line.
absl::StatusOr<nlohmann::json> NormalizeTools(const nlohmann::json& tools, const std::string& name, int line_no) {
  nlohmann::json out = nlohmann::json::array();
  if (!tools.is_array()) return absl::InvalidArgumentError(absl::StrCat(name, ":", line_no, ": \"tools\" must be an array"));
  for (const nlohmann::json& t : tools) {
    const nlohmann::json& f = (t.is_object() && t.contains("function")) ? t["function"] : t;
    if (!f.is_object() || !f.contains("name") || !f["name"].is_string()) {
      return absl::InvalidArgumentError(absl::StrCat(name, ":", line_no, ": every tool needs a string \"name\""));
    }
    nlohmann::json n = {{"name", f["name"]}, {"description", f.value("description", "")}};
    if (f.contains("parameters")) n["parameters"] = f["parameters"];
    out.push_back(std::move(n));
  }
  return out;
}

absl::Status CheckMessages(const nlohmann::json& m, const std::string& name, int line_no) {
  if (!m.is_array() || m.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(name, ":", line_no, ": \"messages\" must be a non-empty array"));
  }
  for (const nlohmann::json& msg : m) {
    if (!msg.is_object() || !msg.contains("role") || !msg["role"].is_string()) {
      return absl::InvalidArgumentError(absl::StrCat(name, ":", line_no, ": every message needs a string \"role\""));
    }
    if (msg.contains("content") && !msg["content"].is_string() && !msg["content"].is_null()) {
      return absl::InvalidArgumentError(absl::StrCat(name, ":", line_no, ": message \"content\" must be a string"));
    }
  }
  return absl::OkStatus();
}

std::vector<SampleRequest> SyntheticToolChats(const FileOptions& o, int n) {
  const nlohmann::json tools = nlohmann::json::parse(R"([
    {"name": "get_weather", "description": "Current weather for a city.",
     "parameters": {"type": "object", "properties": {"city": {"type": "string"},
       "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}, "required": ["city"]}},
    {"name": "convert_currency", "description": "Convert an amount between two currencies.",
     "parameters": {"type": "object", "properties": {"amount": {"type": "number"}, "from": {"type": "string"},
       "to": {"type": "string"}}, "required": ["amount", "from", "to"]}},
    {"name": "search_flights", "description": "Find flights between two airports on a date.",
     "parameters": {"type": "object", "properties": {"origin": {"type": "string"},
       "destination": {"type": "string"}, "date": {"type": "string", "format": "date"}},
       "required": ["origin", "destination", "date"]}},
    {"name": "create_event", "description": "Add an event to the user's calendar.",
     "parameters": {"type": "object", "properties": {"title": {"type": "string"},
       "start": {"type": "string", "format": "date-time"}, "minutes": {"type": "integer"}},
       "required": ["title", "start"]}}])");
  const std::vector<std::string> cities = {"Zurich", "Lagos", "Osaka", "Lima", "Oslo", "Austin", "Pune", "Perth"};
  const std::vector<std::string> currencies = {"USD", "EUR", "JPY", "CHF", "INR", "BRL"};
  std::mt19937_64 rng(o.seed);
  auto pick = [&](const std::vector<std::string>& v) { return v[std::uniform_int_distribution<size_t>(0, v.size() - 1)(rng)]; };
  std::vector<SampleRequest> out;
  for (int i = 0; i < n; ++i) {
    std::string q;
    switch (std::uniform_int_distribution<int>(0, 3)(rng)) {
      case 0: q = absl::StrCat("What's the weather like in ", pick(cities), " right now? Answer in celsius."); break;
      case 1:
        q = absl::StrCat("How much is ", std::uniform_int_distribution<int>(5, 5000)(rng), " ", pick(currencies),
                         " in ", pick(currencies), "?");
        break;
      case 2:
        q = absl::StrCat("Find me a flight from ", pick(cities), " to ", pick(cities), " on 2025-0",
                         std::uniform_int_distribution<int>(1, 9)(rng), "-1", std::uniform_int_distribution<int>(0, 9)(rng), ".");
        break;
      default:
        q = absl::StrCat("Put a ", std::uniform_int_distribution<int>(15, 90)(rng), "-minute call with the ", pick(cities),
                         " team in my calendar for tomorrow at 10:00.");
    }
    SampleRequest r;
    r.prompt = q;
    r.messages = nlohmann::json::array({{{"role", "user"}, {"content", q}}});
    r.tools = tools;
    r.expected_output_len = o.output_len.value_or(128);
    out.push_back(std::move(r));
  }
  return out;
}

}  // namespace

absl::StatusOr<std::vector<SampleRequest>> ToolChatsFromJsonl(std::string_view text, const std::string& name,
                                                              const FileOptions& o, int n) {
  std::vector<SampleRequest> all;
  absl::Status st = ForEachJsonLine(text, name, [&](int line_no, const nlohmann::json& j) -> absl::Status {
    if (!j.contains("messages")) return absl::InvalidArgumentError(absl::StrCat(name, ":", line_no, ": missing \"messages\""));
    absl::Status m = CheckMessages(j["messages"], name, line_no);
    if (!m.ok()) return m;
    SampleRequest r;
    r.messages = j["messages"];
    if (j.contains("tools")) {
      auto tools = NormalizeTools(j["tools"], name, line_no);
      if (!tools.ok()) return tools.status();
      r.tools = std::move(*tools);
    } else {
      r.tools = nlohmann::json::array();
    }
    auto out_len = OutputTokensField(j, name, line_no, o.output_len.value_or(128));
    if (!out_len.ok()) return out_len.status();
    r.expected_output_len = *out_len;
    const nlohmann::json& last = r.messages.back();
    if (last.contains("content") && last["content"].is_string()) r.prompt = last["content"].get<std::string>();
    all.push_back(std::move(r));
    return absl::OkStatus();
  });
  if (!st.ok()) return st;
  if (all.empty()) return absl::InvalidArgumentError(absl::StrCat(name, ": no chats"));
  std::mt19937_64 rng(o.seed);
  if (o.shuffle) std::shuffle(all.begin(), all.end(), rng);
  if (static_cast<int>(all.size()) > n) all.resize(n);
  Oversample(&all, n, &rng);
  return all;
}

absl::StatusOr<std::vector<SampleRequest>> ToolChatDataset(const std::string& path, const FileOptions& o, int n) {
  if (path.empty()) return SyntheticToolChats(o, n);
  auto text = ReadFile(path);
  if (!text.ok()) return text.status();
  return ToolChatsFromJsonl(*text, path, o, n);
}

}  // namespace quarry::bench

// quarry-bench datasets, with vLLM's semantics (vllm/benchmarks/datasets.py): random token prompts of exact
// lengths (range ratio, shared prefix), ShareGPT-format JSON (first two turns, shuffled, vLLM's length
// filters), custom JSONL prompts, and tool-calling chats (JSONL of messages + tools, or a built-in synthetic
// set). Files are parsed without exceptions escaping: a bad file or line is INVALID_ARGUMENT naming it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "router/text/tokenizer/tokenizer.h"

namespace quarry::bench {

struct SampleRequest {
  std::string prompt;               // text prompt (the user message on the chat endpoint)
  std::vector<int32_t> prompt_ids;  // random dataset: the exact ids the text encodes to
  int prompt_len = 0;               // tokens; 0 = unknown (the server's usage is used: rendered chats)
  int expected_output_len = 0;      // max_tokens to send
  nlohmann::json messages;          // tool chats: [{"role":..., "content":...}, ...]; null otherwise
  nlohmann::json tools;             // tool chats: [{"name", "description", "parameters"}, ...]
};

struct RandomOptions {
  int input_len = 1024;
  int output_len = 128;
  double range_ratio = 0.0;  // lengths uniform in [floor(L(1-r)), ceil(L(1+r))], 0 <= r < 1
  int prefix_len = 0;        // a random prefix shared by every prompt, on top of input_len
  uint64_t seed = 0;
};
struct RandomStats {
  int token_mismatch = 0;  // sum of |encoded - target| over prompts that missed after 10 tries (vLLM warns)
};
absl::StatusOr<std::vector<SampleRequest>> RandomDataset(const Tokenizer& tok, const RandomOptions& o, int n,
                                                         RandomStats* stats = nullptr);

struct FileOptions {
  std::optional<int> output_len;  // sharegpt: override the reference completion's length; custom: default
  bool shuffle = true;
  uint64_t seed = 0;
};
// ShareGPT_V3 format: [{"conversations": [{"from": "human", "value": ...}, {"from": "gpt", "value": ...}]}].
absl::StatusOr<std::vector<SampleRequest>> ShareGptDataset(const std::string& path, const Tokenizer& tok,
                                                           const FileOptions& o, int n);
absl::StatusOr<std::vector<SampleRequest>> ShareGptFromJson(std::string_view text, const std::string& name,
                                                            const Tokenizer& tok, const FileOptions& o, int n);
// JSONL, one {"prompt": "...", "output_tokens": N?} per line (output_tokens or max_tokens; else
// o.output_len, else 256). Empty lines are skipped.
absl::StatusOr<std::vector<SampleRequest>> CustomDataset(const std::string& path, const Tokenizer& tok,
                                                         const FileOptions& o, int n);
absl::StatusOr<std::vector<SampleRequest>> CustomFromJsonl(std::string_view text, const std::string& name,
                                                           const Tokenizer& tok, const FileOptions& o, int n);
// JSONL, one {"messages": [...], "tools": [...], "max_tokens": N?} per line; tools in our form
// ({"name","description","parameters"}) or OpenAI's ({"type":"function","function":{...}}). An empty path
// gives the built-in synthetic set (weather, currency, flights, calendar; seeded).
absl::StatusOr<std::vector<SampleRequest>> ToolChatDataset(const std::string& path, const FileOptions& o, int n);
absl::StatusOr<std::vector<SampleRequest>> ToolChatsFromJsonl(std::string_view text, const std::string& name,
                                                              const FileOptions& o, int n);

// vLLM's is_valid_sequence (ShareGPT filter).
bool IsValidSequence(int prompt_len, int output_len, bool skip_min_output_len_check);

}  // namespace quarry::bench

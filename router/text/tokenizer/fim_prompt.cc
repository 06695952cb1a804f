// BuildFimPrompt: control tokens by id, text between them with parse_special = false.
#include "router/text/tokenizer/fim_prompt.h"

#include "absl/strings/str_cat.h"

namespace quarry {

absl::StatusOr<std::vector<int32_t>> BuildFimPrompt(const Tokenizer& tok, std::string_view prefix,
                                                    std::string_view suffix) {
  auto id = [&](const char* name) -> absl::StatusOr<int32_t> {
    std::optional<int32_t> t = tok.TokenToId(name);
    if (!t) {
      return absl::FailedPreconditionError(
          absl::StrCat("this tokenizer has no ", name, " token: the model does not support fill-in-the-middle"));
    }
    return *t;
  };
  absl::StatusOr<int32_t> pre = id("<|fim_prefix|>"), suf = id("<|fim_suffix|>"), mid = id("<|fim_middle|>");
  if (!pre.ok()) return pre.status();
  if (!suf.ok()) return suf.status();
  if (!mid.ok()) return mid.status();
  std::vector<int32_t> ids = {*pre};
  EncodeOptions plain;
  plain.parse_special = false;
  if (absl::Status st = tok.EncodeAppend(prefix, plain, &ids); !st.ok()) return st;
  ids.push_back(*suf);
  if (absl::Status st = tok.EncodeAppend(suffix, plain, &ids); !st.ok()) return st;
  ids.push_back(*mid);
  return ids;
}

}  // namespace quarry

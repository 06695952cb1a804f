// LoadModelContext: config + tokenizer + chat template from a Hugging Face model directory.
#include "router/server/model_context.h"

#include <algorithm>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "kernels/status_macros.h"

namespace quarry {

absl::StatusOr<std::unique_ptr<ModelContext>> LoadModelContext(const std::string& dir, const std::string& name,
                                                               int64_t max_model_len) {
  namespace fs = std::filesystem;
  auto ctx = std::make_unique<ModelContext>();
  QUARRY_ASSIGN_OR_RETURN(ctx->config, LoadModelConfig(dir + "/config.json"));
  ctx->name = name.empty() ? fs::path(dir).lexically_normal().filename().string() : name;
  if (ctx->name.empty()) ctx->name = fs::path(dir).lexically_normal().parent_path().filename().string();
  ctx->max_model_len =
      max_model_len > 0 ? max_model_len : std::min<int64_t>(ctx->config.max_position_embeddings, 8192);
  ctx->dtype = ctx->config.torch_dtype;
  QUARRY_ASSIGN_OR_RETURN(ctx->tokenizer, Tokenizer::Load(dir));
  if (ctx->tokenizer->vocab_size() > ctx->config.vocab_size) {
    return absl::InvalidArgumentError(absl::StrCat(dir, ": the tokenizer has ", ctx->tokenizer->vocab_size(),
                                                   " tokens but config.json vocab_size is ", ctx->config.vocab_size));
  }
  for (int32_t id = 0; id < ctx->tokenizer->vocab_size(); ++id) {
    std::string bytes;
    if (ctx->tokenizer->AppendTokenBytes(id, /*skip_special_tokens=*/false, &bytes).ok()) {
      ctx->max_token_bytes = std::max(ctx->max_token_bytes, bytes.size());
    }
  }
  if (fs::exists(dir + "/chat_template.jinja")) {
    QUARRY_ASSIGN_OR_RETURN(chat::ChatTemplate t, chat::ChatTemplate::FromFile(dir + "/chat_template.jinja"));
    ctx->chat_template = std::move(t);
  } else if (!ctx->tokenizer->config().chat_template.empty()) {
    QUARRY_ASSIGN_OR_RETURN(chat::ChatTemplate t,
                            chat::ChatTemplate::FromTokenizerConfig(dir + "/tokenizer_config.json"));
    ctx->chat_template = std::move(t);
  }
  return ctx;
}

}  // namespace quarry

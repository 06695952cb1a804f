// `quarry chat --endpoint ADDR "message"`: a streaming chat client for people (quarry.v1.Quarry/ChatStream):
// prints the reply as it arrives, tool calls as JSON lines, then usage and speed on stderr.
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>

#include <grpcpp/grpcpp.h>

#include "quarry/v1/quarry.grpc.pb.h"
#include "worker/cli/commands.h"

namespace quarry::cli {
namespace {

struct ChatFlags {
  std::string endpoint = "127.0.0.1:50051";
  std::string message;
  std::string system;
  int max_tokens = 256;
  float temperature = 1.0f;
  int timeout_s = 600;
  bool show_token_ids = false;
};

int RunChat(const ChatFlags& f) {
  auto stub = v1::Quarry::NewStub(grpc::CreateChannel(f.endpoint, grpc::InsecureChannelCredentials()));
  v1::ChatRequest req;
  if (!f.system.empty()) {
    v1::ChatMessage* s = req.add_messages();
    s->set_role(v1::ROLE_SYSTEM);
    s->set_content(f.system);
  }
  v1::ChatMessage* u = req.add_messages();
  u->set_role(v1::ROLE_USER);
  u->set_content(f.message);
  req.mutable_sampling()->set_temperature(f.temperature);
  req.mutable_stopping()->set_max_tokens(static_cast<uint32_t>(f.max_tokens));
  req.mutable_output()->set_include_usage(true);
  req.mutable_output()->set_return_token_ids(f.show_token_ids);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(f.timeout_s));
  const auto start = std::chrono::steady_clock::now();
  std::chrono::steady_clock::time_point first;
  auto reader = stub->ChatStream(&ctx, req);
  v1::ChatStreamResponse m;
  v1::ChatStreamResponse last;
  bool got_first = false;
  while (reader->Read(&m)) {
    if (!got_first && (!m.content().empty() || m.tool_calls_size() > 0)) {
      got_first = true;
      first = std::chrono::steady_clock::now();
    }
    std::fputs(m.content().c_str(), stdout);
    if (f.show_token_ids) {
      for (uint32_t id : m.token_ids()) std::fprintf(stderr, "<%u>", id);
    }
    for (const v1::ToolCall& c : m.tool_calls()) {
      std::printf("\n{\"tool_call\": {\"id\": \"%s\", \"name\": \"%s\", \"arguments\": %s}}", c.id().c_str(),
                  c.name().c_str(), c.arguments_json().c_str());
    }
    std::fflush(stdout);
    if (m.finish_reason() != v1::FINISH_REASON_UNSPECIFIED) last = m;
  }
  grpc::Status st = reader->Finish();
  std::printf("\n");
  if (!st.ok()) {
    std::fprintf(stderr, "quarry chat: %s (%d): %s\n", f.endpoint.c_str(), static_cast<int>(st.error_code()),
                 st.error_message().c_str());
    return kExitError;
  }
  const double total = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const double ttft = got_first ? std::chrono::duration<double>(first - start).count() : total;
  const uint32_t n = last.usage().completion_tokens();
  std::fprintf(stderr, "[%s; prompt %u tokens, completion %u tokens; first token %.2f s; %.2f tokens/s]\n",
               v1::FinishReason_Name(last.finish_reason()).c_str(), last.usage().prompt_tokens(), n, ttft,
               n > 1 && total > ttft ? (n - 1) / (total - ttft) : 0.0);
  return kExitOk;
}

}  // namespace

void RegisterChat(CLI::App& app, int* exit_code) {
  auto flags = std::make_shared<ChatFlags>();
  CLI::App* cmd = app.add_subcommand("chat", "Send one chat message to a Quarry router and stream the reply.");
  cmd->add_option("message", flags->message, "The user message")->required();
  cmd->add_option("--endpoint", flags->endpoint, "Router address host:port")->capture_default_str();
  cmd->add_option("--system", flags->system, "System prompt (default: the model's own)");
  cmd->add_option("--max-tokens", flags->max_tokens, "Most tokens to generate")->capture_default_str();
  cmd->add_option("--temperature", flags->temperature, "Sampling temperature (0 = greedy)")->capture_default_str();
  cmd->add_option("--timeout-s", flags->timeout_s, "Deadline of the call in seconds")->capture_default_str();
  cmd->add_flag("--show-token-ids", flags->show_token_ids, "Also print the generated token ids (stderr)");
  cmd->callback([flags, exit_code] { *exit_code = RunChat(*flags); });
}

}  // namespace quarry::cli

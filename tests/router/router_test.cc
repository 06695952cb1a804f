// The router end to end over gRPC on loopback (in-process workers with real engines on a tiny
// Granite-vocabulary model): text and token prompts, streaming == unary, stop strings, chat rendering,
// validation errors with precise codes, failover to a healthy worker, cancellation freeing worker state,
// draining, metrics.
#include <thread>

#include "router/server/request_builder.h"
#include "router/text/tokenizer/fim_prompt.h"
#include "tests/router/router_fixture.h"
#include "worker/engine/generator.h"

namespace quarry {
namespace {

using testing::Ctx;
using testing::RouterCluster;

v1::GenerateRequest GreedyText(const std::string& text, int max_tokens) {
  v1::GenerateRequest r;
  r.set_text(text);
  r.mutable_sampling()->set_temperature(0);
  r.mutable_stopping()->set_max_tokens(max_tokens);
  r.mutable_stopping()->set_ignore_eos(true);
  r.mutable_output()->set_return_token_ids(true);
  return r;
}

class RouterTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { cluster_ = new RouterCluster(2); }
  static void TearDownTestSuite() {
    delete cluster_;
    cluster_ = nullptr;
  }
  static RouterCluster* cluster_;
};

RouterCluster* RouterTest::cluster_ = nullptr;

TEST_F(RouterTest, GenerateTextEqualsEngineGreedyDecoded) {
  const std::string prompt = "Simply put, the theory of relativity states that ";
  v1::GenerateResponse resp;
  auto ctx = Ctx();
  grpc::Status st = cluster_->stub().Generate(ctx.get(), GreedyText(prompt, 12), &resp);
  ASSERT_TRUE(st.ok()) << st.error_message();
  // Reference: tokenize, greedy-generate on the engine's model directly, detokenize.
  const Tokenizer& tok = *cluster_->model().tokenizer;
  auto ids = tok.Encode(prompt, {});
  ASSERT_TRUE(ids.ok());
  Model model(cluster_->weights());
  GenerateOptions opts;
  opts.max_new_tokens = 12;
  opts.ignore_eos = true;
  auto ref = GreedyGenerate(model, *ids, opts);
  ASSERT_TRUE(ref.ok());
  EXPECT_EQ(std::vector<int32_t>(resp.token_ids().begin(), resp.token_ids().end()), ref->tokens);
  auto text = tok.Decode(ref->tokens, true);
  ASSERT_TRUE(text.ok());
  EXPECT_EQ(resp.text(), *text);
  EXPECT_EQ(resp.finish_reason(), v1::FINISH_REASON_LENGTH);
  EXPECT_EQ(resp.usage().prompt_tokens(), ids->size());
  EXPECT_EQ(resp.usage().completion_tokens(), 12u);
  EXPECT_EQ(resp.usage().total_tokens(), ids->size() + 12);
  EXPECT_GT(resp.timing().total_us(), 0u);
  EXPECT_EQ(resp.model(), "tiny");
}

TEST_F(RouterTest, StreamingConcatenatesToTheUnaryAnswer) {
  v1::GenerateRequest req = GreedyText("Hello world, ", 16);
  req.mutable_output()->set_include_usage(true);
  v1::GenerateResponse unary;
  auto c1 = Ctx();
  ASSERT_TRUE(cluster_->stub().Generate(c1.get(), req, &unary).ok());
  auto c2 = Ctx();
  auto reader = cluster_->stub().GenerateStream(c2.get(), req);
  v1::GenerateStreamResponse m;
  std::string text;
  std::vector<uint32_t> ids;
  int messages = 0, finals = 0;
  while (reader->Read(&m)) {
    ++messages;
    text += m.text();
    ids.insert(ids.end(), m.token_ids().begin(), m.token_ids().end());
    if (m.finish_reason() != v1::FINISH_REASON_UNSPECIFIED) {
      ++finals;
      EXPECT_EQ(m.usage().completion_tokens(), 16u);
    }
  }
  ASSERT_TRUE(reader->Finish().ok());
  EXPECT_EQ(text, unary.text());
  EXPECT_EQ(ids, std::vector<uint32_t>(unary.token_ids().begin(), unary.token_ids().end()));
  EXPECT_EQ(finals, 1);
  EXPECT_GT(messages, 1);
}

TEST_F(RouterTest, StopStringCutsTheOutput) {
  v1::GenerateResponse base;
  auto c1 = Ctx();
  ASSERT_TRUE(cluster_->stub().Generate(c1.get(), GreedyText("The answer is", 24), &base).ok());
  ASSERT_GE(base.text().size(), 8u);
  // A stop string from the middle of the greedy answer (bytes 4..7): the answer must end right before it.
  const std::string stop = base.text().substr(4, 3);
  const size_t at = base.text().find(stop);
  v1::GenerateRequest req = GreedyText("The answer is", 24);
  req.mutable_stopping()->add_stop(stop);
  v1::GenerateResponse resp;
  auto c2 = Ctx();
  ASSERT_TRUE(cluster_->stub().Generate(c2.get(), req, &resp).ok());
  EXPECT_EQ(resp.text(), base.text().substr(0, at));
  EXPECT_EQ(resp.finish_reason(), v1::FINISH_REASON_STOP);
  EXPECT_EQ(resp.matched_stop(), stop);
}

TEST_F(RouterTest, TokenIdPromptAndSeededSamplingAreReproducible) {
  v1::GenerateRequest req;
  for (uint32_t id : {61346u, 2231u, 11u}) req.mutable_token_ids()->add_ids(id);
  req.mutable_sampling()->set_temperature(0.9f);
  req.mutable_sampling()->set_seed(17);
  req.mutable_stopping()->set_max_tokens(10);
  req.mutable_stopping()->set_ignore_eos(true);
  v1::GenerateResponse a, b;
  auto c1 = Ctx(), c2 = Ctx();
  ASSERT_TRUE(cluster_->stub().Generate(c1.get(), req, &a).ok());
  ASSERT_TRUE(cluster_->stub().Generate(c2.get(), req, &b).ok());
  EXPECT_EQ(a.text(), b.text());
  EXPECT_EQ(a.usage().prompt_tokens(), 3u);
}

TEST_F(RouterTest, ChatRendersTheTemplateAndTokenizes) {
  v1::TokenizeRequest tr;
  v1::ChatRequest* chat = tr.mutable_chat();
  v1::ChatMessage* m = chat->add_messages();
  m->set_role(v1::ROLE_USER);
  m->set_content("What's the weather like in Boston right now?");
  v1::Tool* tool = chat->add_tools();
  tool->set_name("get_current_weather");
  tool->set_description("Get the current weather for a specified city.");
  tool->set_parameters_json(
      R"({"type": "object", "properties": {"city": {"type": "string", "description": "Name of the city"}}, "required": ["city"]})");
  v1::TokenizeResponse resp;
  auto ctx = Ctx();
  ASSERT_TRUE(cluster_->stub().Tokenize(ctx.get(), tr, &resp).ok());
  // Spec §8.4, "one tool, no system message" (the model card's rendering).
  const std::string expected =
      "<|start_of_role|>system<|end_of_role|>You are a helpful assistant with access to the following tools. You "
      "may call one or more tools to assist with the user query.\n\nYou are provided with function signatures "
      "within <tools></tools> XML tags:\n<tools>\n{\"type\": \"function\", \"function\": {\"name\": "
      "\"get_current_weather\", \"description\": \"Get the current weather for a specified city.\", \"parameters\": "
      "{\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\", \"description\": \"Name of the "
      "city\"}}, \"required\": [\"city\"]}}}\n</tools>\n\nFor each tool call, return a json object with function "
      "name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, "
      "\"arguments\": <args-json-object>}\n</tool_call>. If a tool does not exist in the provided list of tools, "
      "notify the user that you do not have the ability to fulfill the request.<|end_of_text|>\n"
      "<|start_of_role|>user<|end_of_role|>What's the weather like in Boston right now?<|end_of_text|>\n"
      "<|start_of_role|>assistant<|end_of_role|>";
  EXPECT_EQ(resp.rendered_prompt(), expected);
  EXPECT_EQ(resp.token_ids(0), 100264u);  // <|start_of_role|>
  EXPECT_EQ(resp.count(), static_cast<uint32_t>(resp.token_ids_size()));
  // And a chat call runs end to end.
  v1::ChatRequest cr = *chat;
  cr.mutable_sampling()->set_temperature(0);
  cr.mutable_stopping()->set_max_tokens(8);
  v1::ChatResponse out;
  auto c2 = Ctx();
  grpc::Status st = cluster_->stub().Chat(c2.get(), cr, &out);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(out.usage().prompt_tokens(), resp.count());
  EXPECT_NE(out.finish_reason(), v1::FINISH_REASON_UNSPECIFIED);
}

TEST_F(RouterTest, InvalidRequestsGetPreciseCodes) {
  v1::GenerateResponse resp;
  v1::GenerateRequest too_long = GreedyText("hi", 600);  // context 512
  auto c1 = Ctx();
  grpc::Status st = cluster_->stub().Generate(c1.get(), too_long, &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(st.error_message().find("exceeds the context length 512"), std::string::npos) << st.error_message();
  v1::GenerateRequest wrong_model = GreedyText("hi", 4);
  wrong_model.set_model("llama");
  auto c2 = Ctx();
  EXPECT_EQ(cluster_->stub().Generate(c2.get(), wrong_model, &resp).error_code(), grpc::StatusCode::NOT_FOUND);
  v1::GenerateRequest bad_temp = GreedyText("hi", 4);
  bad_temp.mutable_sampling()->set_temperature(-2);
  auto c3 = Ctx();
  st = cluster_->stub().Generate(c3.get(), bad_temp, &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(st.error_message().find("temperature"), std::string::npos);
  v1::GenerateRequest no_prompt;
  auto c4 = Ctx();
  EXPECT_EQ(cluster_->stub().Generate(c4.get(), no_prompt, &resp).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  v1::ChatRequest empty_chat;
  v1::ChatResponse cresp;
  auto c5 = Ctx();
  st = cluster_->stub().Chat(c5.get(), empty_chat, &cresp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  v1::ChatRequest bad_tool;
  bad_tool.add_messages()->set_role(v1::ROLE_USER);
  bad_tool.add_tools()->set_name("f");
  bad_tool.mutable_tools(0)->set_parameters_json("{not json");
  auto c6 = Ctx();
  st = cluster_->stub().Chat(c6.get(), bad_tool, &cresp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(st.error_message().find("tools[0].parameters_json"), std::string::npos);
}

TEST_F(RouterTest, ClientCancelFreesWorkerState) {
  v1::GenerateRequest req = GreedyText("Count forever:", 400);
  auto ctx = Ctx();
  auto reader = cluster_->stub().GenerateStream(ctx.get(), req);
  v1::GenerateStreamResponse m;
  ASSERT_TRUE(reader->Read(&m));
  ctx->TryCancel();
  while (reader->Read(&m)) {
  }
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  bool freed = false;
  for (int i = 0; i < 200 && !freed; ++i) {
    freed = cluster_->engine(0).GetLoad().state_slots_used == 0 && cluster_->engine(1).GetLoad().state_slots_used == 0;
    if (!freed) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_TRUE(freed);
}

TEST_F(RouterTest, MetricsCountOutcomes) {
  v1::GenerateResponse resp;
  auto ctx = Ctx();
  ASSERT_TRUE(cluster_->stub().Generate(ctx.get(), GreedyText("x", 3), &resp).ok());
  const std::string text = cluster_->metrics().Serialize();
  EXPECT_NE(text.find("quarry_router_requests_total{code=\"OK\""), std::string::npos) << text.substr(0, 2000);
  EXPECT_NE(text.find("quarry_router_time_to_first_token_seconds_count"), std::string::npos);
}

TEST(RouterFailover, DeadWorkerIsSkipped) {
  RouterCluster cluster(1, /*dead_first=*/true);
  for (int i = 0; i < 4; ++i) {
    v1::GenerateResponse resp;
    auto ctx = Ctx();
    grpc::Status st = cluster.stub().Generate(ctx.get(), GreedyText("hello", 3), &resp);
    ASSERT_TRUE(st.ok()) << st.error_message();
    EXPECT_EQ(resp.usage().completion_tokens(), 3u);
  }
}

TEST(RouterDrain, NewCallsAreUnavailable) {
  RouterCluster cluster(1);
  EXPECT_TRUE(cluster.service().Drain(std::chrono::milliseconds(100)));
  v1::GenerateResponse resp;
  auto ctx = Ctx();
  EXPECT_EQ(cluster.stub().Generate(ctx.get(), GreedyText("hello", 3), &resp).error_code(),
            grpc::StatusCode::UNAVAILABLE);
}

v1::ChatRequest WeatherChat() {
  v1::ChatRequest chat;
  v1::ChatMessage* m = chat.add_messages();
  m->set_role(v1::ROLE_USER);
  m->set_content("Weather in Boston?");
  for (const char* name : {"get_current_weather", "get_time"}) {
    v1::Tool* tool = chat.add_tools();
    tool->set_name(name);
    tool->set_parameters_json(R"({"type": "object", "properties": {"city": {"type": "string"}}})");
  }
  return chat;
}

std::string Rendered(RouterCluster& c, const v1::ChatRequest& chat, grpc::Status* status = nullptr) {
  v1::TokenizeRequest tr;
  *tr.mutable_chat() = chat;
  v1::TokenizeResponse resp;
  auto ctx = Ctx();
  grpc::Status st = c.stub().Tokenize(ctx.get(), tr, &resp);
  if (status) *status = st;
  return resp.rendered_prompt();
}

TEST_F(RouterTest, ToolChoiceModes) {
  v1::ChatRequest chat = WeatherChat();
  const std::string auto_prompt = Rendered(*cluster_, chat);
  EXPECT_NE(auto_prompt.find("\"name\": \"get_time\""), std::string::npos);
  EXPECT_EQ(auto_prompt.find("You must answer"), std::string::npos);

  chat.mutable_tool_choice()->set_mode(v1::TOOL_CHOICE_MODE_NONE);  // tools hidden from the model
  const std::string none_prompt = Rendered(*cluster_, chat);
  EXPECT_EQ(none_prompt.find("<tools>"), std::string::npos);
  EXPECT_NE(none_prompt.find("You are a helpful assistant. Please ensure"), std::string::npos);

  chat.mutable_tool_choice()->set_mode(v1::TOOL_CHOICE_MODE_REQUIRED);
  const std::string required = Rendered(*cluster_, chat);
  EXPECT_EQ(required.rfind("<|start_of_role|>system<|end_of_role|>You must answer by calling one or more of the "
                           "provided tools, not with plain text.\n\nYou are a helpful assistant with access",
                           0),
            0u)
      << required.substr(0, 300);

  chat.mutable_tool_choice()->set_function_name("get_time");  // only that tool is shown, and it must be called
  const std::string named = Rendered(*cluster_, chat);
  EXPECT_EQ(named.find("get_current_weather"), std::string::npos);
  EXPECT_NE(named.find("You must answer by calling the tool \"get_time\""), std::string::npos);

  chat.mutable_tool_choice()->set_function_name("launch_rockets");
  grpc::Status st;
  Rendered(*cluster_, chat, &st);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(st.error_message().find("launch_rockets"), std::string::npos);
}

TEST_F(RouterTest, FillInTheMiddleGenerates) {
  v1::GenerateRequest req;
  req.mutable_fim()->set_prefix("def add(a, b):\n    return ");
  req.mutable_fim()->set_suffix("\n");
  req.mutable_sampling()->set_temperature(0);
  req.mutable_stopping()->set_max_tokens(5);
  req.mutable_stopping()->set_ignore_eos(true);
  v1::GenerateResponse resp;
  auto ctx = Ctx();
  grpc::Status st = cluster_->stub().Generate(ctx.get(), req, &resp);
  ASSERT_TRUE(st.ok()) << st.error_message();
  auto ids = BuildFimPrompt(*cluster_->model().tokenizer, "def add(a, b):\n    return ", "\n");
  ASSERT_TRUE(ids.ok());
  EXPECT_EQ(resp.usage().prompt_tokens(), ids->size());
  EXPECT_EQ(resp.usage().completion_tokens(), 5u);
}

}  // namespace
}  // namespace quarry

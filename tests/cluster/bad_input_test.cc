// Bad input through the real router process: every case ends with INVALID_ARGUMENT whose message names the
// field, on unary and streaming RPCs alike, and the cluster keeps serving afterwards (10 MB prompts included).
#include <cmath>
#include <functional>
#include <limits>

#include "tests/cluster/cluster.h"
#include "tests/cluster/stream_util.h"

namespace quarry::testing {
namespace {

using std::chrono::seconds;
using Call = std::function<grpc::Status(v1::Quarry::Stub&)>;

grpc::Status Gen(v1::Quarry::Stub& s, const v1::GenerateRequest& r) {
  v1::GenerateResponse resp;
  auto ctx = Deadline(seconds(30));
  return s.Generate(ctx.get(), r, &resp);
}
grpc::Status GenStream(v1::Quarry::Stub& s, const v1::GenerateRequest& r) {
  auto ctx = Deadline(seconds(30));
  return ReadStream(s, ctx.get(), r).status;
}
grpc::Status ChatCall(v1::Quarry::Stub& s, const v1::ChatRequest& r) {
  v1::ChatResponse resp;
  auto ctx = Deadline(seconds(30));
  return s.Chat(ctx.get(), r, &resp);
}
grpc::Status ChatStreamCall(v1::Quarry::Stub& s, const v1::ChatRequest& r) {
  auto ctx = Deadline(seconds(30));
  auto reader = s.ChatStream(ctx.get(), r);
  v1::ChatStreamResponse m;
  while (reader->Read(&m)) {
  }
  return reader->Finish();
}

v1::GenerateRequest Text(const std::string& text) {
  v1::GenerateRequest r;
  r.set_text(text);
  r.mutable_stopping()->set_max_tokens(4);
  return r;
}
v1::GenerateRequest Ids(std::vector<uint32_t> ids) {
  v1::GenerateRequest r;
  r.mutable_token_ids();  // set the oneof even when empty
  for (uint32_t id : ids) r.mutable_token_ids()->add_ids(id);
  r.mutable_stopping()->set_max_tokens(4);
  return r;
}
v1::ChatRequest UserChat(const std::string& content) {
  v1::ChatRequest r;
  v1::ChatMessage* m = r.add_messages();
  m->set_role(v1::ROLE_USER);
  m->set_content(content);
  r.mutable_stopping()->set_max_tokens(4);
  return r;
}

struct Case {
  std::string name;
  Call call;
  std::string field;  // must appear in the error message
};

std::vector<Case> Cases() {
  std::vector<Case> c;
  auto gen = [](v1::GenerateRequest r) { return [r](v1::Quarry::Stub& s) { return Gen(s, r); }; };
  auto gen_stream = [](v1::GenerateRequest r) { return [r](v1::Quarry::Stub& s) { return GenStream(s, r); }; };
  auto chat = [](v1::ChatRequest r) { return [r](v1::Quarry::Stub& s) { return ChatCall(s, r); }; };
  auto chat_stream = [](v1::ChatRequest r) { return [r](v1::Quarry::Stub& s) { return ChatStreamCall(s, r); }; };

  // Empty messages.
  c.push_back({"Generate: empty request", gen({}), "text, token_ids or fim"});
  c.push_back({"GenerateStream: empty request", gen_stream({}), "text, token_ids or fim"});
  c.push_back({"Generate: empty text", gen(Text("")), "text"});
  c.push_back({"Generate: empty token_ids", gen(Ids({})), "token_ids.ids"});
  c.push_back({"Chat: empty request", chat({}), "messages"});
  c.push_back({"ChatStream: empty request", chat_stream({}), "messages"});
  // Unknown roles.
  {
    v1::ChatRequest r = UserChat("hi");
    r.mutable_messages(0)->set_role(static_cast<v1::Role>(42));
    c.push_back({"Chat: role 42", chat(r), "messages[0].role"});
    v1::ChatRequest r2 = UserChat("hi");
    r2.add_messages()->set_content("no role");
    c.push_back({"ChatStream: role unspecified", chat_stream(r2), "messages[1].role"});
  }
  // Invalid JSON.
  {
    v1::ChatRequest r = UserChat("weather?");
    v1::Tool* t = r.add_tools();
    t->set_name("get_weather");
    t->set_parameters_json("{\"type\": \"object\", \"properties\": ");
    c.push_back({"Chat: invalid tool JSON", chat(r), "tools[0].parameters_json"});
    v1::ChatRequest r2 = UserChat("doc?");
    r2.add_documents_json("{\"text\": 1");
    c.push_back({"Chat: invalid document JSON", chat(r2), "documents_json[0]"});
    v1::ChatRequest r3 = UserChat("kw?");
    r3.set_chat_template_kwargs_json("[1, 2");
    c.push_back({"Chat: invalid kwargs JSON", chat(r3), "chat_template_kwargs_json"});
  }
  // max_tokens 0 or beyond the context (512).
  {
    v1::GenerateRequest r = Text("hello");
    r.mutable_stopping()->set_max_tokens(0);
    c.push_back({"Generate: max_tokens 0", gen(r), "stopping.max_tokens"});
    r.mutable_stopping()->set_max_tokens(600);
    c.push_back({"Generate: max_tokens 600 > context", gen(r), "stopping.max_tokens"});
    r.mutable_stopping()->set_max_tokens(std::numeric_limits<uint32_t>::max());
    c.push_back({"GenerateStream: max_tokens 2^32-1", gen_stream(r), "stopping.max_tokens"});
    v1::ChatRequest cr = UserChat("hello");
    cr.mutable_stopping()->set_max_tokens(0);
    c.push_back({"Chat: max_tokens 0", chat(cr), "stopping.max_tokens"});
  }
  // Sampling ranges.
  {
    v1::GenerateRequest r = Text("hello");
    r.mutable_sampling()->set_temperature(-0.5f);
    c.push_back({"Generate: temperature -0.5", gen(r), "sampling.temperature"});
    r.mutable_sampling()->set_temperature(std::nanf(""));
    c.push_back({"Generate: temperature NaN", gen(r), "sampling.temperature"});
    v1::GenerateRequest r2 = Text("hello");
    r2.mutable_sampling()->set_top_p(1.5f);
    c.push_back({"Generate: top_p 1.5", gen(r2), "sampling.top_p"});
    r2.mutable_sampling()->set_top_p(0.0f);
    c.push_back({"Generate: top_p 0", gen(r2), "sampling.top_p"});
    v1::ChatRequest cr = UserChat("hello");
    cr.mutable_sampling()->set_top_p(1.01f);
    c.push_back({"ChatStream: top_p 1.01", chat_stream(cr), "sampling.top_p"});
  }
  // Prompts longer than the context.
  {
    c.push_back({"Generate: 600 token ids", gen(Ids(std::vector<uint32_t>(600, 1000))), "prompt"});
    std::string words;
    for (int i = 0; i < 700; ++i) words += " hello";
    c.push_back({"Generate: 700-word text", gen(Text(words)), "prompt"});
    c.push_back({"Chat: 700-word message", chat(UserChat(words)), "prompt"});
    const std::string big(10 << 20, 'a');
    c.push_back({"Generate: 10 MB text", gen(Text(big)), "prompt"});
    c.push_back({"GenerateStream: 10 MB text", gen_stream(Text(big)), "prompt"});
    c.push_back({"Chat: 10 MB message", chat(UserChat(big)), "prompt"});
  }
  // Token ids outside the vocabulary (100352).
  {
    c.push_back({"Generate: token id 100352", gen(Ids({5, 100352, 7})), "token_ids.ids[1]"});
    c.push_back({"GenerateStream: token id 2^32-1", gen_stream(Ids({std::numeric_limits<uint32_t>::max()})),
                 "token_ids.ids[0]"});
    v1::GenerateRequest r = Text("hello");
    r.mutable_stopping()->add_stop_token_ids(200000);
    c.push_back({"Generate: stop token id 200000", gen(r), "stopping.stop_token_ids"});
    c.push_back({"Detokenize: token id 100352", [](v1::Quarry::Stub& s) {
                   v1::DetokenizeRequest r;
                   r.add_token_ids(5);
                   r.add_token_ids(100352);
                   v1::DetokenizeResponse resp;
                   auto ctx = Deadline(seconds(30));
                   return s.Detokenize(ctx.get(), r, &resp);
                 }, "token_ids[1]"});
    c.push_back({"Detokenize: token id 2^32-1", [](v1::Quarry::Stub& s) {
                   v1::DetokenizeRequest r;
                   r.add_token_ids(std::numeric_limits<uint32_t>::max());
                   v1::DetokenizeResponse resp;
                   auto ctx = Deadline(seconds(30));
                   return s.Detokenize(ctx.get(), r, &resp);
                 }, "token_ids[0]"});
  }
  return c;
}

TEST(ClusterBadInputTest, EachIsInvalidArgumentNamingTheFieldAndTheServiceStaysUp) {
  Cluster cluster;
  ASSERT_TRUE(cluster.Start());
  for (const Case& c : Cases()) {
    SCOPED_TRACE(c.name);
    grpc::Status st = c.call(cluster.router());
    EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << st.error_code() << " " << st.error_message();
    EXPECT_NE(st.error_message().find(c.field), std::string::npos)
        << "message '" << st.error_message().substr(0, 300) << "' does not name " << c.field;
  }
  // Still serving: a normal request works and every process is alive.
  v1::GenerateResponse resp;
  auto ctx = Deadline(seconds(30));
  grpc::Status st = cluster.router().Generate(ctx.get(), FixedLength("still here", 5), &resp);
  EXPECT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(resp.usage().completion_tokens(), 5u);
  EXPECT_TRUE(cluster.router_process().Running());
  EXPECT_TRUE(cluster.worker_process(0).Running());
  EXPECT_TRUE(cluster.worker_process(1).Running());
  if (HasFailure()) std::cerr << cluster.Logs();
}

}  // namespace
}  // namespace quarry::testing

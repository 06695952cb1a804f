// OutputPipeline: decoder -> stop strings -> tool calls.
#include "router/server/output_pipeline.h"

namespace quarry {

OutputPipeline::OutputPipeline(const Tokenizer& tokenizer, const PreparedRequest& r)
    : decoder_(tokenizer, r.skip_special_tokens),
      stops_(r.stop, r.include_stop),
      parse_tools_(r.parse_tool_calls),
      tools_("call_" + r.id + "_") {}

void OutputPipeline::Route(std::string text, Delta* d, bool final) {
  if (!parse_tools_) {
    d->text += text;
    return;
  }
  chat::ToolCallDelta t = tools_.Push(text);
  if (final) {
    chat::ToolCallDelta rest = tools_.Finish();
    t.content += rest.content;
    for (auto& c : rest.tool_calls) t.tool_calls.push_back(std::move(c));
    for (auto& e : rest.errors) t.errors.push_back(std::move(e));
  }
  d->text += t.content;
  tool_calls_seen_ += static_cast<int>(t.tool_calls.size());
  for (auto& c : t.tool_calls) d->tool_calls.push_back(std::move(c));
  for (auto& e : t.errors) d->tool_call_errors.push_back(std::move(e));
}

absl::StatusOr<OutputPipeline::Delta> OutputPipeline::Push(absl::Span<const int32_t> ids) {
  Delta d;
  if (stops_.stopped()) return d;
  std::string text;
  absl::Status st = decoder_.Add(ids, &text);
  if (!st.ok()) return st;
  StopStringMatcher::Result r = stops_.Push(text);
  d.stopped = r.stopped;
  d.matched_stop = r.matched;
  Route(std::move(r.text), &d, /*final=*/r.stopped);
  return d;
}

OutputPipeline::Delta OutputPipeline::Finish() {
  Delta d;
  if (stops_.stopped()) return d;
  std::string text;
  decoder_.Finish(&text);
  StopStringMatcher::Result r = stops_.Push(text);
  std::string rest = r.text + (r.stopped ? "" : stops_.Flush());
  d.stopped = r.stopped;
  d.matched_stop = r.matched;
  Route(std::move(rest), &d, /*final=*/true);
  return d;
}

}  // namespace quarry

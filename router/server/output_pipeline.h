// Per-request output processing on the router: token ids -> incremental UTF-8-safe text -> stop strings
// (across token boundaries) -> optional tool-call extraction. Text already emitted is never revised.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "router/server/request_builder.h"
#include "router/stream/stop_strings.h"
#include "router/text/template/tool_call_parser.h"
#include "router/text/tokenizer/incremental_decoder.h"

namespace quarry {

class OutputPipeline {
 public:
  OutputPipeline(const Tokenizer& tokenizer, const PreparedRequest& request);

  struct Delta {
    std::string text;                             // content to send
    std::vector<chat::ParsedToolCall> tool_calls;  // calls completed in this delta
    std::vector<std::string> tool_call_errors;     // blocks that did not parse (they stay in `text`)
    bool stopped = false;                         // a stop string matched: generation must end
    std::string matched_stop;
  };
  absl::StatusOr<Delta> Push(absl::Span<const int32_t> ids);
  // End of generation: flushes held-back text and unterminated tool-call blocks.
  Delta Finish();
  int tool_calls_seen() const { return tool_calls_seen_; }

 private:
  void Route(std::string text, Delta* d, bool final);

  IncrementalDecoder decoder_;
  StopStringMatcher stops_;
  bool parse_tools_;
  chat::ToolCallStreamParser tools_;
  int tool_calls_seen_ = 0;
};

}  // namespace quarry

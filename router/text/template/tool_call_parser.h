// Tool-call parsing of Granite-4.0-H output (spec §8.5): `<tool_call>\n{"name": ..., "arguments": {...}}\n
// </tool_call>` blocks become structured calls, everything else is content. Whole-text and streaming forms
// produce the same result for any split of the text.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace quarry::chat {

struct ParsedToolCall {
  std::string id;         // "<id_prefix><n>", n counting from 0 within one parser
  std::string name;
  std::string arguments;  // compact JSON (key order kept); a string "arguments" is passed through verbatim
};

struct ToolCallDelta {
  std::string content;                    // text outside tool-call blocks (malformed blocks included verbatim)
  std::vector<ParsedToolCall> tool_calls; // calls completed by this delta
  std::vector<std::string> errors;        // one line per block that could not be parsed
};

// Incremental parser: feed text deltas with Push, then Finish once at the end. Never emits a prefix of
// "<tool_call>" as content before knowing it is not a tag; whitespace between a tool-call block and the next
// block or the end of the output is dropped.
class ToolCallStreamParser {
 public:
  explicit ToolCallStreamParser(std::string id_prefix = "call_") : id_prefix_(std::move(id_prefix)) {}

  ToolCallDelta Push(std::string_view text);
  // Flushes held-back text; an unterminated block is returned as content (with an error).
  ToolCallDelta Finish();

 private:
  void Process(ToolCallDelta& out, bool final);
  void EmitText(std::string_view text, ToolCallDelta& out);
  void CloseBlock(std::string_view body, ToolCallDelta& out);

  std::string id_prefix_;
  std::string buf_;          // unprocessed text (outside a block) or the body of an open block
  bool in_call_ = false;
  bool after_call_ = false;  // last thing seen was a tool-call block: whitespace is held in pending_ws_
  std::string pending_ws_;
  int next_id_ = 0;
};

// Whole-text form (one Push + Finish).
ToolCallDelta ParseToolCalls(std::string_view text, std::string id_prefix = "call_");

}  // namespace quarry::chat

// Stop strings across token boundaries: nothing of a stop string is ever sent, text before it is.
#include "router/stream/stop_strings.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace quarry {
namespace {

// Feeds `pieces` and returns everything sent, plus whether it stopped.
std::pair<std::string, bool> Feed(StopStringMatcher& m, const std::vector<std::string>& pieces) {
  std::string out;
  for (const std::string& p : pieces) {
    StopStringMatcher::Result r = m.Push(p);
    out += r.text;
    if (r.stopped) return {out, true};
  }
  return {out + m.Flush(), false};
}

TEST(StopStrings, MatchSplitAcrossDeltas) {
  StopStringMatcher m({"END"});
  auto [text, stopped] = Feed(m, {"hello E", "N", "D world"});
  EXPECT_TRUE(stopped);
  EXPECT_EQ(text, "hello ");
}

TEST(StopStrings, HeldBackPrefixIsReleasedWhenItDiverges) {
  StopStringMatcher m({"END"});
  StopStringMatcher::Result r = m.Push("abc EN");
  EXPECT_EQ(r.text, "abc ");  // "EN" could start "END"
  r = m.Push("X");
  EXPECT_EQ(r.text, "ENX");
  EXPECT_FALSE(r.stopped);
  EXPECT_EQ(m.Flush(), "");
}

TEST(StopStrings, FlushReleasesPendingPrefixAtTheEnd) {
  StopStringMatcher m({"</s>"});
  auto [text, stopped] = Feed(m, {"a <", "/"});
  EXPECT_FALSE(stopped);
  EXPECT_EQ(text, "a </");
}

TEST(StopStrings, EarliestMatchWinsAndIncludeOption) {
  StopStringMatcher m({"cd", "b"});
  auto [text, stopped] = Feed(m, {"abcd"});
  EXPECT_TRUE(stopped);
  EXPECT_EQ(text, "a");
  StopStringMatcher inc({"cd"}, /*include_stop_in_output=*/true);
  auto [t2, s2] = Feed(inc, {"ab", "c", "de"});
  EXPECT_TRUE(s2);
  EXPECT_EQ(t2, "abcd");
}

TEST(StopStrings, AfterStopNothingMoreIsSent) {
  StopStringMatcher m({"x"});
  EXPECT_TRUE(m.Push("ax").stopped);
  EXPECT_EQ(m.Push("more").text, "");
  EXPECT_EQ(m.Flush(), "");
}

TEST(StopStrings, NoStopsPassesEverythingThrough) {
  StopStringMatcher m({});
  EXPECT_EQ(m.Push("abc").text, "abc");
  StopStringMatcher empty({""});  // empty stop strings are ignored
  EXPECT_EQ(empty.Push("abc").text, "abc");
}

TEST(StopStrings, UnicodeStopString) {
  StopStringMatcher m({"。"});  // 3 bytes, may arrive split
  auto [text, stopped] = Feed(m, {"日本\xe3", "\x80", "\x82後"});
  EXPECT_TRUE(stopped);
  EXPECT_EQ(text, "日本");
}

}  // namespace
}  // namespace quarry

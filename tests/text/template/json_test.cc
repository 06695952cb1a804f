// json.h: Python float repr, json.dumps escaping/indent/sort_keys, and order-preserving nlohmann conversion.
#include "router/text/template/json.h"

#include <cmath>
#include <limits>

#include <gtest/gtest.h>

namespace quarry::chat {
namespace {

TEST(PyFloatRepr, MatchesPython) {
  EXPECT_EQ(PyFloatRepr(1.0), "1.0");
  EXPECT_EQ(PyFloatRepr(0.1), "0.1");
  EXPECT_EQ(PyFloatRepr(1e-05), "1e-05");
  EXPECT_EQ(PyFloatRepr(0.0001), "0.0001");
  EXPECT_EQ(PyFloatRepr(1e16), "1e+16");
  EXPECT_EQ(PyFloatRepr(1e15), "1000000000000000.0");
  EXPECT_EQ(PyFloatRepr(123456789.125), "123456789.125");
  EXPECT_EQ(PyFloatRepr(0.1 + 0.2), "0.30000000000000004");
  EXPECT_EQ(PyFloatRepr(-2.5), "-2.5");
  EXPECT_EQ(PyFloatRepr(-0.0), "-0.0");
  EXPECT_EQ(PyFloatRepr(1.5e-7), "1.5e-07");
  EXPECT_EQ(PyFloatRepr(1e300), "1e+300");
  EXPECT_EQ(PyFloatRepr(5e-324), "5e-324");
  EXPECT_EQ(PyFloatRepr(std::numeric_limits<double>::infinity()), "inf");
}

TEST(JsonDumps, PythonSeparatorsAndEscapes) {
  auto v = FromJson(nlohmann::ordered_json::parse(
      R"({"b": 1, "a": [1.0, 1e-05, true, null, "é\"\\\n\t\u0001<>&'"], "e": {}, "f": []})"));
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(*JsonDumps(*v), R"({"b": 1, "a": [1.0, 1e-05, true, null, "é\"\\\n\t\u0001<>&'"], "e": {}, "f": []})");
  DumpsOptions indent;
  indent.indent = "  ";
  EXPECT_EQ(*JsonDumps(*v, indent),
            "{\n  \"b\": 1,\n  \"a\": [\n    1.0,\n    1e-05,\n    true,\n    null,\n    \"é\\\"\\\\\\n\\t\\u0001<>&'\"\n"
            "  ],\n  \"e\": {},\n  \"f\": []\n}");
  DumpsOptions sorted;
  sorted.sort_keys = true;
  EXPECT_EQ(JsonDumps(*v, sorted)->substr(0, 6), "{\"a\": ");
  EXPECT_EQ(*JsonDumps(Value(std::nan(""))), "NaN");
  EXPECT_EQ(*JsonDumps(Value(-std::numeric_limits<double>::infinity())), "-Infinity");
  EXPECT_EQ(JsonDumps(Value()).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(JsonConversion, KeepsOrderAndTypes) {
  auto j = nlohmann::ordered_json::parse(R"({"z": 1, "a": 2.0, "m": [1, "x", null, false]})");
  auto v = FromJson(j);
  ASSERT_TRUE(v.ok());
  ASSERT_TRUE(v->is_dict());
  EXPECT_EQ(v->as_dict().entries[0].first.as_string(), "z");
  EXPECT_TRUE(v->as_dict().entries[0].second.is_int());
  EXPECT_TRUE(v->as_dict().entries[1].second.is_float());
  auto back = ToJson(*v);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->dump(), j.dump());
  nlohmann::ordered_json deep = nlohmann::ordered_json::array();
  for (int i = 0; i < 300; ++i) deep = nlohmann::ordered_json::array({deep});
  EXPECT_EQ(FromJson(deep).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace quarry::chat

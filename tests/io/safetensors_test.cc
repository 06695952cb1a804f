// ParseSafetensors / SafetensorsFile: the golden files parse exactly as listed, and every kind of corrupt
// file is refused with the right code and a message naming the file and the tensor.
#include "worker/model/io/safetensors.h"

#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <string>

#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/io/test_util.h"

namespace quarry {
namespace {

using ::testing::HasSubstr;
using ::quarry::testing::MakeImage;
using ::quarry::testing::ScratchDir;
using ::quarry::testing::WriteBytes;

struct Expected {
  std::vector<int64_t> shape;
  std::string dtype;
};

// tensors.txt lines: `name [d0, d1] DTYPE`.
std::map<std::string, Expected> ReadTensorList(const std::string& path) {
  std::map<std::string, Expected> out;
  std::ifstream in(path);
  EXPECT_TRUE(in.good()) << path;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    size_t open = line.find('['), close = line.find(']');
    EXPECT_NE(open, std::string::npos) << line;
    Expected e;
    for (absl::string_view d : absl::StrSplit(line.substr(open + 1, close - open - 1), ", ", absl::SkipEmpty())) {
      e.shape.push_back(std::stoll(std::string(d)));
    }
    e.dtype = line.substr(close + 2);
    out[line.substr(0, open - 1)] = e;
  }
  return out;
}

void CheckGolden(const std::string& dir) {
  auto file = SafetensorsFile::Open(dir + "/model.safetensors");
  ASSERT_TRUE(file.ok()) << file.status();
  const auto expected = ReadTensorList(dir + "/tensors.txt");
  ASSERT_FALSE(expected.empty());
  EXPECT_EQ((*file)->tensors().size(), expected.size());
  for (const auto& [name, e] : expected) {
    const TensorInfo* t = (*file)->Find(name);
    ASSERT_NE(t, nullptr) << name;
    EXPECT_EQ(t->shape, e.shape) << name;
    EXPECT_STREQ(StDTypeName(t->dtype), e.dtype.c_str()) << name;
    EXPECT_EQ(static_cast<uint64_t>(t->numel()) * StDTypeSize(t->dtype), t->end - t->begin) << name;
    ASSERT_NE(t->data, nullptr);
  }
}

TEST(GoldenFiles, TinyAMatchesTensorList) { CheckGolden("tests/data/golden/tiny-a"); }
TEST(GoldenFiles, TinyBMatchesTensorList) { CheckGolden("tests/data/golden/tiny-b"); }

TEST(GoldenFiles, TinyBMetadataAndValues) {
  auto file = SafetensorsFile::Open("tests/data/golden/tiny-b/model.safetensors");
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ((*file)->metadata().at("format"), "pt");
  // A_log = log(U[1, 16]) in bf16: every value in [0, log 16].
  const TensorInfo* a = (*file)->Find("model.layers.0.mamba.A_log");
  ASSERT_NE(a, nullptr);
  for (int64_t i = 0; i < a->numel(); ++i) {
    uint16_t h;
    std::memcpy(&h, static_cast<const char*>(a->data) + 2 * i, 2);
    uint32_t u = static_cast<uint32_t>(h) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    EXPECT_GE(f, -0.01f);
    EXPECT_LE(f, 2.78f);
  }
}

TEST(GoldenFiles, ReferenceFilesHoldEveryCase) {
  for (const char* dir : {"tests/data/golden/tiny-a", "tests/data/golden/tiny-b"}) {
    auto file = SafetensorsFile::Open(std::string(dir) + "/reference.safetensors");
    ASSERT_TRUE(file.ok()) << file.status();
    EXPECT_EQ((*file)->tensors().size(), 20u) << dir;
    const int64_t prompt_len[] = {1, 7, 45, 70};
    for (int i = 0; i < 4; ++i) {
      const std::string c = "case" + std::to_string(i);
      const TensorInfo* prompt = (*file)->Find(c + ".prompt");
      const TensorInfo* gen = (*file)->Find(c + ".generated");
      const TensorInfo* prefill = (*file)->Find(c + ".prefill_logits");
      const TensorInfo* step = (*file)->Find(c + ".step_logits");
      const TensorInfo* full = (*file)->Find(c + ".full_logits");
      ASSERT_TRUE(prompt && gen && prefill && step && full) << dir << " " << c;
      EXPECT_EQ(prompt->dtype, StDType::kI64);
      EXPECT_EQ(prompt->shape, std::vector<int64_t>{prompt_len[i]});
      EXPECT_EQ(gen->dtype, StDType::kI64);
      EXPECT_EQ(gen->shape, std::vector<int64_t>{12});
      EXPECT_EQ(prefill->dtype, StDType::kF32);
      ASSERT_EQ(prefill->shape.size(), 2u);
      EXPECT_EQ(prefill->shape[0], prompt_len[i]);
      EXPECT_EQ(step->shape, (std::vector<int64_t>{12, prefill->shape[1]}));
      EXPECT_EQ(full->shape, (std::vector<int64_t>{prompt_len[i] + 11, prefill->shape[1]}));
    }
  }
}

// ---- hand-made images ----

TEST(Parse, ValidImageWithMetadataAndEveryDtype) {
  std::string header =
      R"({"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
      R"("b":{"dtype":"BF16","shape":[1],"data_offsets":[8,10]},"c":{"dtype":"F16","shape":[],"data_offsets":[10,12]},)"
      R"("d":{"dtype":"F64","shape":[1],"data_offsets":[12,20]},"e":{"dtype":"I64","shape":[1],"data_offsets":[20,28]},)"
      R"("f":{"dtype":"I32","shape":[1],"data_offsets":[28,32]},"g":{"dtype":"I16","shape":[1],"data_offsets":[32,34]},)"
      R"("h":{"dtype":"I8","shape":[1],"data_offsets":[34,35]},"i":{"dtype":"U8","shape":[1],"data_offsets":[35,36]},)"
      R"("j":{"dtype":"BOOL","shape":[1,1],"data_offsets":[36,37]},"k":{"dtype":"F32","shape":[0,3],"data_offsets":[37,37]}})";
  auto h = ParseSafetensors(MakeImage(header, std::string(37, 'x')), "mem");
  ASSERT_TRUE(h.ok()) << h.status();
  ASSERT_EQ(h->tensors.size(), 11u);
  EXPECT_EQ(h->tensors[0].name, "a");  // header order kept
  EXPECT_EQ(h->tensors[9].dtype, StDType::kBool);
  EXPECT_EQ(h->tensors[2].numel(), 1);
  EXPECT_EQ(h->tensors[10].numel(), 0);
  EXPECT_EQ(h->metadata.at("format"), "pt");
  EXPECT_EQ(h->data_offset, 8 + header.size());
}

struct BadCase {
  const char* what;
  std::string image;
  absl::StatusCode code;
  std::vector<std::string> mentions;
};

std::string Img(std::string_view header, size_t data_bytes) { return MakeImage(header, std::string(data_bytes, '\0')); }

TEST(Parse, CorruptImagesAreRefusedPrecisely) {
  std::string past_end(8, '\0');
  past_end[0] = static_cast<char>(1234 & 0xff);
  past_end[1] = static_cast<char>(1234 >> 8);
  past_end.append(92, ' ');
  const std::vector<BadCase> cases = {
      {"truncated length", std::string(5, '\0'), absl::StatusCode::kDataLoss, {"f.st", "5 bytes"}},
      {"header past end", past_end, absl::StatusCode::kDataLoss,
       {"f.st", "header length 1234 points past the end of the file (size 100)"}},
      {"bad json", Img(R"({"a":{"dtype":"F32",)", 0), absl::StatusCode::kInvalidArgument, {"f.st", "not valid JSON"}},
      {"non-object json", Img(R"([1,2,3])", 0), absl::StatusCode::kInvalidArgument, {"f.st", "array"}},
      {"offsets past end", Img(R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", 8),
       absl::StatusCode::kDataLoss, {"f.st", "'w'", "past the end"}},
      {"size mismatch", Img(R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,16]}})", 16),
       absl::StatusCode::kInvalidArgument, {"f.st", "'w'", "needs 12 bytes"}},
      {"overlap",
       Img(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})",
           16),
       absl::StatusCode::kInvalidArgument, {"f.st", "'b'", "overlaps tensor 'a'"}},
      {"negative shape", Img(R"({"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,0]}})", 0),
       absl::StatusCode::kInvalidArgument, {"f.st", "'w'", "negative"}},
      {"shape overflow",
       Img(R"({"w":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,0]}})", 0),
       absl::StatusCode::kInvalidArgument, {"f.st", "'w'", "overflows"}},
      {"unknown dtype", Img(R"({"w":{"dtype":"F8","shape":[1],"data_offsets":[0,1]}})", 1),
       absl::StatusCode::kInvalidArgument, {"f.st", "'w'", "F8"}},
      {"reversed offsets", Img(R"({"w":{"dtype":"U8","shape":[0],"data_offsets":[2,1]}})", 4),
       absl::StatusCode::kInvalidArgument, {"f.st", "'w'", "reversed"}},
      {"missing offsets", Img(R"({"w":{"dtype":"U8","shape":[1]}})", 1), absl::StatusCode::kInvalidArgument,
       {"f.st", "'w'", "data_offsets"}},
      {"float shape", Img(R"({"w":{"dtype":"U8","shape":[1.5],"data_offsets":[0,1]}})", 1),
       absl::StatusCode::kInvalidArgument, {"f.st", "'w'", "not an integer"}},
      {"duplicate", Img(R"({"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"w":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}})", 2),
       absl::StatusCode::kInvalidArgument, {"f.st", "'w'", "twice"}},
      {"metadata not strings", Img(R"({"__metadata__":{"a":1}})", 0), absl::StatusCode::kInvalidArgument,
       {"f.st", "__metadata__"}},
      {"tiny header", Img("{", 0), absl::StatusCode::kInvalidArgument, {"f.st", "too small"}},
      {"deep nesting", Img(std::string(5000, '[') + std::string(5000, ']'), 0), absl::StatusCode::kInvalidArgument,
       {"f.st", "nests deeper"}},
  };
  for (const BadCase& c : cases) {
    auto h = ParseSafetensors(c.image, "f.st");
    ASSERT_FALSE(h.ok()) << c.what;
    EXPECT_EQ(h.status().code(), c.code) << c.what << ": " << h.status();
    for (const std::string& m : c.mentions) EXPECT_THAT(h.status().message(), HasSubstr(m)) << c.what;
  }
}

TEST(Open, MissingFileIsNotFound) {
  auto f = SafetensorsFile::Open("/nonexistent/dir/model.safetensors");
  ASSERT_FALSE(f.ok());
  EXPECT_EQ(f.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(f.status().message(), HasSubstr("/nonexistent/dir/model.safetensors"));
}

TEST(Open, EmptyAndTruncatedFilesAreDataLoss) {
  const std::string dir = ScratchDir();
  WriteBytes(dir + "/empty.safetensors", "");
  auto f = SafetensorsFile::Open(dir + "/empty.safetensors");
  ASSERT_FALSE(f.ok());
  EXPECT_EQ(f.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(f.status().message(), HasSubstr(dir + "/empty.safetensors"));

  // A valid file cut short inside its data section.
  std::string img = Img(R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", 16);
  WriteBytes(dir + "/cut.safetensors", img.substr(0, img.size() - 3));
  f = SafetensorsFile::Open(dir + "/cut.safetensors");
  ASSERT_FALSE(f.ok());
  EXPECT_EQ(f.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(f.status().message(), HasSubstr(dir + "/cut.safetensors"));
  EXPECT_THAT(f.status().message(), HasSubstr("'w'"));
}

TEST(Open, DataPointersPointIntoTheFile) {
  const std::string dir = ScratchDir();
  std::string data = "abcdefgh";
  WriteBytes(dir + "/x.safetensors",
             MakeImage(R"({"p":{"dtype":"U8","shape":[3],"data_offsets":[5,8]},"q":{"dtype":"U8","shape":[5],"data_offsets":[0,5]}})",
                       data));
  auto f = SafetensorsFile::Open(dir + "/x.safetensors");
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(std::string(static_cast<const char*>((*f)->Find("p")->data), 3), "fgh");
  EXPECT_EQ(std::string(static_cast<const char*>((*f)->Find("q")->data), 5), "abcde");
  EXPECT_EQ((*f)->Find("r"), nullptr);
  EXPECT_EQ((*f)->file_size(), 8 + 105 + data.size());
}

}  // namespace
}  // namespace quarry

#include "codec/eval/tensor_file.h"

#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>

#include "gtest/gtest.h"

namespace kvpack {
namespace eval {
namespace {

std::string TempPath(const std::string& name) {
  const char* dir = std::getenv("TEST_TMPDIR");
  return std::string(dir ? dir : "/tmp") + "/" + name;
}

void WriteFile(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary).write(bytes.data(), bytes.size());
}

std::string Safetensors(const std::string& header, const std::string& data) {
  std::string out(8, '\0');
  const uint64_t len = header.size();
  std::memcpy(&out[0], &len, 8);
  return out + header + data;
}

TEST(TensorFileTest, ReadsBf16F16AndF32Safetensors) {
  // bf16 1.0 = 0x3F80, -2.0 = 0xC000; f16 0.5 = 0x3800; f32 3.0.
  std::string data("\x80\x3F\x00\xC0", 4);
  data += std::string("\x00\x38", 2);
  float three = 3.0f;
  data += std::string(reinterpret_cast<char*>(&three), 4);
  const std::string path = TempPath("t.safetensors");
  WriteFile(path, Safetensors(
                      "{\"a\": {\"dtype\": \"BF16\", \"shape\": [2], \"data_offsets\": [0, 4]}, "
                      "\"b\": {\"dtype\": \"F16\", \"shape\": [1, 1], \"data_offsets\": [4, 6]}, "
                      "\"c\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [6, 10]}, "
                      "\"__metadata__\": {\"x\": \"y\"}}",
                      data));
  absl::StatusOr<Tensor> a = ReadSafetensors(path, "a");
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->shape, (std::vector<uint64_t>{2}));
  EXPECT_EQ(a->values, (std::vector<float>{1.0f, -2.0f}));
  EXPECT_EQ(ReadSafetensors(path, "b")->values, (std::vector<float>{0.5f}));
  EXPECT_EQ(ReadSafetensors(path, "c")->values, (std::vector<float>{3.0f}));
  EXPECT_EQ(ReadSafetensors(path, "zz").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(ReadSafetensors(path, "").status().code(), absl::StatusCode::kNotFound);
}

TEST(TensorFileTest, RejectsMalformedSafetensors) {
  const std::string path = TempPath("bad.safetensors");
  WriteFile(path, Safetensors("{\"a\": {\"dtype\": \"BF16\", \"shape\": [4], \"data_offsets\": [0, 8]}}",
                              std::string(4, '\0')));
  EXPECT_EQ(ReadSafetensors(path, "a").status().code(), absl::StatusCode::kDataLoss);
  WriteFile(path, Safetensors("{\"a\": {\"dtype\": ", ""));
  EXPECT_EQ(ReadSafetensors(path, "a").status().code(), absl::StatusCode::kDataLoss);
  WriteFile(path, Safetensors("{\"a\": {\"dtype\": \"I8\", \"shape\": [1], \"data_offsets\": [0, 1]}}",
                              std::string(1, '\0')));
  EXPECT_EQ(ReadSafetensors(path, "a").status().code(), absl::StatusCode::kInvalidArgument);
  WriteFile(path, std::string("\xff\xff\xff\xff\xff\xff\xff\x7f", 8));
  EXPECT_EQ(ReadSafetensors(path, "a").status().code(), absl::StatusCode::kDataLoss);
}

TEST(TensorFileTest, ReadsNpy) {
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";
  header += std::string(128 - 10 - header.size() - 1, ' ') + "\n";
  std::string bytes = std::string("\x93NUMPY\x01\x00", 8);
  bytes += static_cast<char>(header.size());
  bytes += '\0';
  bytes += header;
  for (int i = 0; i < 6; ++i) {
    const float v = static_cast<float>(i) * 0.5f;
    bytes += std::string(reinterpret_cast<const char*>(&v), 4);
  }
  const std::string path = TempPath("t.npy");
  WriteFile(path, bytes);
  absl::StatusOr<Tensor> t = ReadTensorFile(path, "");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->shape, (std::vector<uint64_t>{2, 3}));
  EXPECT_EQ(t->values[5], 2.5f);
  WriteFile(path, bytes.substr(0, bytes.size() - 4));
  EXPECT_EQ(ReadNpy(path).status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(ReadTensorFile(TempPath("x.bin"), "").status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace eval
}  // namespace kvpack

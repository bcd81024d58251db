// A decode node's path with a GPU: blocks fetched still encoded from a real server and
// decoded on the client's GPU, into a dense tensor and into per-layer buffers, equal to what
// the server decodes. Runs on a GPU machine (tag "gpu"); see tests/gpu/server_on_device.sh.
#include <memory>
#include <string>
#include <vector>

#include "client/gpu_decode.h"
#include "client/kvpack_client.h"
#include "gtest/gtest.h"
#include "tests/testing/block_data.h"
#include "tests/testing/test_server.h"

namespace kvpack {
namespace {

class ClientGpuDecodeTest : public ::testing::TestWithParam<const char*> {
 protected:
  void SetUp() override {
    server_ = TestServer::Start();
    ClientOptions options;
    options.target = server_->target();
    auto client = Client::Connect(options);
    ASSERT_TRUE(client.ok()) << client.status();
    client_ = *std::move(client);
    auto codec = gpu::GpuCodec::Create(0);
    ASSERT_TRUE(codec.ok()) << codec.status();
    gpu_ = *std::move(codec);

    layout_.layers = 4;
    layout_.kv_heads = 8;
    layout_.head_dim = 128;
    layout_.tokens = 16;
    layout_.dtype = DType::kBFloat16;
    raw_ = RandomBlock(layout_, 77);
    PutOptions put;
    put.codec = GetParam();
    ASSERT_TRUE(client_->Put("ns", {PutBlock{"block", layout_, Bytes(raw_)}}, put).ok());
    auto decoded = client_->Get("ns", {"block"}, Want::kDecoded);
    ASSERT_TRUE(decoded.ok()) << decoded.status();
    server_decoded_ = (*decoded)[0].bytes;
    auto encoded = client_->Get("ns", {"block"}, Want::kEncoded);
    ASSERT_TRUE(encoded.ok()) << encoded.status();
    encoded_ = (*encoded)[0];
  }

  std::string CopyBack(const void* device, size_t bytes) {
    std::string host(bytes, '\0');
    EXPECT_TRUE(gpu_->CopyToHost(device, absl::MakeSpan(reinterpret_cast<uint8_t*>(host.data()),
                                                        host.size()))
                    .ok());
    return host;
  }

  std::unique_ptr<TestServer> server_;
  std::unique_ptr<Client> client_;
  std::unique_ptr<gpu::GpuCodec> gpu_;
  BlockLayout layout_;
  std::string raw_, server_decoded_;
  GetResult encoded_;
};

TEST_P(ClientGpuDecodeTest, DecodesIntoADenseTensorAsTheServerDoes) {
  auto buffer = gpu_->AllocateDevice(layout_.RawBytes());
  ASSERT_TRUE(buffer.ok()) << buffer.status();
  ASSERT_TRUE(DecodeOnGpu(encoded_, *gpu_,
                          gpu::DeviceBlockView::Contiguous((*buffer)->data(), layout_))
                  .ok());
  EXPECT_EQ(CopyBack((*buffer)->data(), layout_.RawBytes()), server_decoded_);
}

TEST_P(ClientGpuDecodeTest, DecodesIntoPerLayerBuffersOfAPagedCache) {
  // Each layer's K and V live in their own buffer with room for 64 tokens; the block fills
  // the first 16 token rows of each.
  const uint64_t row = uint64_t{layout_.kv_heads} * layout_.head_dim;
  const uint64_t capacity_tokens = 64;
  std::vector<std::unique_ptr<gpu::GpuCodec::DeviceBuffer>> buffers;
  std::vector<void*> keys, values;
  for (uint32_t l = 0; l < 2 * layout_.layers; ++l) {
    auto buffer = gpu_->AllocateDevice(capacity_tokens * row * 2);
    ASSERT_TRUE(buffer.ok()) << buffer.status();
    (l % 2 == 0 ? keys : values).push_back((*buffer)->data());
    buffers.push_back(*std::move(buffer));
  }
  ASSERT_TRUE(DecodeOnGpu(encoded_, *gpu_, gpu::DeviceBlockView::PerLayer(keys, values, row)).ok());
  const uint64_t segment_bytes = layout_.SegmentRawBytes();
  for (uint32_t l = 0; l < layout_.layers; ++l) {
    for (int kv = 0; kv < 2; ++kv) {
      const void* device = kv == 0 ? keys[l] : values[l];
      EXPECT_EQ(CopyBack(device, segment_bytes),
                server_decoded_.substr((2 * l + kv) * segment_bytes, segment_bytes))
          << "layer " << l << (kv == 0 ? " K" : " V");
    }
  }
}

TEST_P(ClientGpuDecodeTest, RefusesDecodedResultsAndCorruptBytes) {
  auto buffer = gpu_->AllocateDevice(layout_.RawBytes());
  ASSERT_TRUE(buffer.ok());
  const auto view = gpu::DeviceBlockView::Contiguous((*buffer)->data(), layout_);
  GetResult decoded = encoded_;
  decoded.encoding = Want::kDecoded;
  EXPECT_EQ(DecodeOnGpu(decoded, *gpu_, view).code(), absl::StatusCode::kFailedPrecondition);
  GetResult corrupt = encoded_;
  corrupt.bytes[corrupt.bytes.size() / 2] ^= 0x40;
  EXPECT_EQ(DecodeOnGpu(corrupt, *gpu_, view).code(), absl::StatusCode::kDataLoss);
}

INSTANTIATE_TEST_SUITE_P(Codecs, ClientGpuDecodeTest,
                         ::testing::Values("int8", "k8v4", "turbo3", "fp8_e4m3", "int4"));

}  // namespace
}  // namespace kvpack

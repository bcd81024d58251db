// The CUDA IPC device path end to end on one GPU: this process is the client, a kvpack_server
// process (started with --device=cuda:0 by tests/gpu/ipc_on_device.sh, its address in
// KVPACK_TEST_TARGET) is the server. Checks that DevicePut stores the very bytes PutBlocks
// stores for the same raw block, key and codec, and that GetIntoDevice writes what Get
// decodes — dense, paged and per layer, for every codec with GPU kernels — and that a client
// killed mid-transfer leaves the server serving.
#include <cuda_runtime_api.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "client/device_client.h"
#include "client/kvpack_client.h"
#include "gpu/ipc_memory.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "kvpack/v1/device.grpc.pb.h"
#include "proto/wire_layout.h"
#include "tests/testing/block_data.h"

extern char** environ;

namespace kvpack {
namespace {

#define CUDA_ASSERT(call) ASSERT_EQ((call), cudaSuccess) << #call

std::string Target() {
  const char* target = std::getenv("KVPACK_TEST_TARGET");
  return target != nullptr ? target : "127.0.0.1:50151";
}

struct DeviceMemory {
  explicit DeviceMemory(size_t bytes) { cudaMalloc(&ptr, bytes); }
  ~DeviceMemory() { cudaFree(ptr); }
  uint8_t* bytes() const { return static_cast<uint8_t*>(ptr); }
  void* ptr = nullptr;
};

class IpcTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    ClientOptions options;
    options.target = Target();
    auto client = Client::Connect(options);
    ASSERT_TRUE(client.ok()) << client.status();
    client_ = *std::move(client);
    ns_ = absl::StrCat("ipc-", ::testing::UnitTest::GetInstance()->random_seed(), "-", getpid());
    auto device = DeviceClient::Open(client_.get(), ns_);
    ASSERT_TRUE(device.ok()) << device.status();
    device_ = *std::move(device);
    CUDA_ASSERT(cudaStreamCreate(&stream_));
  }
  void TearDown() override {
    device_.reset();
    if (stream_ != nullptr) cudaStreamDestroy(stream_);
  }

  // The encoded block `key` as stored.
  std::string Encoded(const std::string& key) {
    auto got = client_->Get(ns_, {key}, Want::kEncoded);
    EXPECT_TRUE(got.ok()) << got.status();
    if (!got.ok() || got->empty() || !(*got)[0].found) return "";
    return std::string((*got)[0].bytes);
  }

  std::unique_ptr<Client> client_;
  std::unique_ptr<DeviceClient> device_;
  std::string ns_;
  cudaStream_t stream_ = nullptr;
};

BlockLayout TestLayout() {
  BlockLayout layout = SmallLayout();
  layout.kv_heads = 4;
  return layout;
}

TEST_P(IpcTest, DensePutStoresThePutBlocksBytesAndGetWritesTheGetBytes) {
  const BlockLayout layout = TestLayout();
  const std::string raw = RandomBlock(layout, 7);
  PutOptions options;
  options.codec = GetParam();
  ASSERT_TRUE(client_->Put(ns_, {{"grpc", layout, Bytes(raw)}}, options).ok());
  const std::string via_grpc = Encoded("grpc");
  ASSERT_TRUE(client_->Delete(ns_, {"grpc"}).ok());

  DeviceMemory src(raw.size());
  CUDA_ASSERT(cudaMemcpy(src.ptr, raw.data(), raw.size(), cudaMemcpyHostToDevice));
  DeviceBlockRef block{"grpc", layout, gpu::DeviceBlockView::Contiguous(src.ptr, layout)};
  auto put = device_->PutFromDevice({&block, 1}, options, stream_);
  ASSERT_TRUE(put.ok()) << put.status();
  ASSERT_TRUE((*put)->Wait().ok()) << (*put)->Wait();
  ASSERT_EQ((*put)->put_results().size(), 1u);
  EXPECT_EQ((*put)->put_results()[0].raw_bytes, raw.size());
  EXPECT_EQ(Encoded("grpc"), via_grpc) << "DevicePut and PutBlocks stored different bytes";

  auto decoded = client_->Get(ns_, {"grpc"}, Want::kDecoded);
  ASSERT_TRUE(decoded.ok());
  DeviceMemory dst(raw.size());
  CUDA_ASSERT(cudaMemset(dst.ptr, 0, raw.size()));
  DeviceBlockRef into{"grpc", layout, gpu::DeviceBlockView::Contiguous(dst.ptr, layout)};
  auto get = device_->GetIntoDevice({&into, 1}, stream_);
  ASSERT_TRUE(get.ok()) << get.status();
  // Ordered on the stream after the get: no host wait before the copy is enqueued.
  std::string back(raw.size(), '\0');
  CUDA_ASSERT(cudaMemcpyAsync(back.data(), dst.ptr, raw.size(), cudaMemcpyDeviceToHost, stream_));
  CUDA_ASSERT(cudaStreamSynchronize(stream_));
  ASSERT_TRUE((*get)->Wait().ok()) << (*get)->Wait();
  ASSERT_EQ((*get)->get_results().size(), 1u);
  EXPECT_TRUE((*get)->get_results()[0].found);
  EXPECT_TRUE(back == std::string((*decoded)[0].bytes)) << "GetIntoDevice and Get differ";
}

TEST_P(IpcTest, PagedPerLayerBlocksRoundTripThroughTheBlockTable) {
  // A paged cache of 8 pages per layer; 3 blocks of one layer each (the per-layer use: layer
  // l of a chunk is pushed as soon as it is computed), in pages 5, 1, 6.
  BlockLayout layer_layout = TestLayout();
  layer_layout.layers = 1;
  const uint64_t page = layer_layout.SegmentRawBytes();
  const int pages = 8, layers = 4;
  std::vector<std::unique_ptr<DeviceMemory>> k, v;
  std::vector<void*> kp, vp;
  std::vector<std::string> host(layers);
  for (int l = 0; l < layers; ++l) {
    k.push_back(std::make_unique<DeviceMemory>(page * pages));
    v.push_back(std::make_unique<DeviceMemory>(page * pages));
    BlockLayout pool = layer_layout;
    pool.tokens *= pages;  // one layer's K then V pages, as random data
    host[l] = RandomBlock(pool, 100 + l);
    CUDA_ASSERT(cudaMemcpy(k[l]->ptr, host[l].data(), page * pages, cudaMemcpyHostToDevice));
    CUDA_ASSERT(cudaMemcpy(v[l]->ptr, host[l].data() + page * pages, page * pages,
                           cudaMemcpyHostToDevice));
    kp.push_back(k[l]->ptr);
    vp.push_back(v[l]->ptr);
  }
  const std::vector<int64_t> table = {5, 1, 6};
  PutOptions options;
  options.codec = GetParam();
  std::vector<std::unique_ptr<DeviceTransfer>> puts;
  for (int l = 0; l < layers; ++l) {
    std::vector<std::string> keys;
    for (size_t b = 0; b < table.size(); ++b) keys.push_back(absl::StrCat("chunk", b, "/layer", l));
    auto blocks = PagedBlocks(keys, layer_layout, {&kp[l], 1}, {&vp[l], 1}, page, table);
    ASSERT_TRUE(blocks.ok()) << blocks.status();
    auto put = device_->PutFromDevice(*blocks, options, stream_);
    ASSERT_TRUE(put.ok()) << put.status();
    puts.push_back(*std::move(put));  // layers overlap: nothing waits until all are sent
  }
  for (auto& put : puts) ASSERT_TRUE(put->Wait().ok()) << put->Wait();

  for (int l = 0; l < layers; ++l) {
    for (size_t b = 0; b < table.size(); ++b) {
      // The same raw block through PutBlocks under a second key: same bytes once the key is
      // swapped back (the seed is the key's), so compare by re-putting under the same key.
      const std::string key = absl::StrCat("chunk", b, "/layer", l);
      const std::string via_device = Encoded(key);
      std::string raw = host[l].substr(page * table[b], page) +
                        host[l].substr(page * pages + page * table[b], page);
      ASSERT_TRUE(client_->Put(ns_, {{key, layer_layout, Bytes(raw)}}, options).ok());
      EXPECT_EQ(Encoded(key), via_device) << key;
    }
  }
  // Back into other pages of fresh buffers, through the block table.
  std::vector<std::unique_ptr<DeviceMemory>> k2, v2;
  std::vector<void*> kp2, vp2;
  for (int l = 0; l < layers; ++l) {
    k2.push_back(std::make_unique<DeviceMemory>(page * pages));
    v2.push_back(std::make_unique<DeviceMemory>(page * pages));
    kp2.push_back(k2[l]->ptr);
    vp2.push_back(v2[l]->ptr);
  }
  const std::vector<int64_t> table2 = {0, 7, 3};
  for (int l = 0; l < layers; ++l) {
    std::vector<std::string> keys;
    for (size_t b = 0; b < table.size(); ++b) keys.push_back(absl::StrCat("chunk", b, "/layer", l));
    auto blocks = PagedBlocks(keys, layer_layout, {&kp2[l], 1}, {&vp2[l], 1}, page, table2);
    ASSERT_TRUE(blocks.ok());
    auto get = device_->GetIntoDevice(*blocks, stream_);
    ASSERT_TRUE(get.ok()) << get.status();
    ASSERT_TRUE((*get)->Wait().ok()) << (*get)->Wait();
    auto decoded = client_->Get(ns_, keys, Want::kDecoded);
    ASSERT_TRUE(decoded.ok());
    for (size_t b = 0; b < table2.size(); ++b) {
      ASSERT_TRUE((*get)->get_results()[b].found);
      std::string kv(2 * page, '\0');
      CUDA_ASSERT(cudaMemcpy(kv.data(), k2[l]->bytes() + page * table2[b], page,
                             cudaMemcpyDeviceToHost));
      CUDA_ASSERT(cudaMemcpy(kv.data() + page, v2[l]->bytes() + page * table2[b], page,
                             cudaMemcpyDeviceToHost));
      EXPECT_TRUE(kv == std::string((*decoded)[b].bytes)) << keys[b];
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Codecs, IpcTest,
                         ::testing::Values("raw", "int8", "fp8_e4m3", "int4", "turbo3",
                                           "turbo_prod3", "k=int8,v=turbo3,boundary=1:int8"),
                         [](const auto& info) {
                           std::string name = info.param;
                           for (char& c : name) if (!isalnum(static_cast<unsigned char>(c))) c = '_';
                           return name;
                         });

class IpcEdgeTest : public IpcTest {};

TEST_F(IpcEdgeTest, MissingKeyIsNotFoundAndAWrongLayoutIsAnError) {
  const BlockLayout layout = TestLayout();
  DeviceMemory dst(layout.RawBytes());
  DeviceBlockRef block{"absent", layout, gpu::DeviceBlockView::Contiguous(dst.ptr, layout)};
  auto get = device_->GetIntoDevice({&block, 1}, stream_);
  ASSERT_TRUE(get.ok());
  ASSERT_TRUE((*get)->Wait().ok());
  EXPECT_FALSE((*get)->get_results()[0].found);

  const std::string raw = RandomBlock(layout, 3);
  ASSERT_TRUE(client_->Put(ns_, {{"k", layout, Bytes(raw)}}).ok());
  BlockLayout other = layout;
  other.layers = 2;
  DeviceBlockRef wrong{"k", other, gpu::DeviceBlockView::Contiguous(dst.ptr, other)};
  auto got = device_->GetIntoDevice({&wrong, 1}, stream_);
  ASSERT_TRUE(got.ok());
  ASSERT_TRUE((*got)->Wait().ok());
  EXPECT_FALSE((*got)->get_results()[0].found);
  EXPECT_NE((*got)->get_results()[0].error.find("the stored block is"), std::string::npos);
}

// The server's device tier (--device_tier; KVPACK_TEST_DEVICE_TIER=1 when the server under
// test has one): a CUDA IPC put is acknowledged from GPU memory, a device get is served from
// there, and every other path sees the newest block: a gRPC get and a lookup find it, a
// delete removes it for good, a gRPC put replaces it. Without a tier the same calls go
// through the store and the test checks the same answers.
TEST_F(IpcEdgeTest, DeviceTierBlocksAreSeenDeletedAndReplacedByEveryPath) {
  const bool tier = std::getenv("KVPACK_TEST_DEVICE_TIER") != nullptr;
  const BlockLayout layout = TestLayout();
  const std::string first = RandomBlock(layout, 41);
  const std::string second = RandomBlock(layout, 42);
  PutOptions options;
  options.codec = "int8";
  // The namespace's first block goes to the store (that registers the namespace).
  ASSERT_TRUE(client_->Put(ns_, {{"registered", layout, Bytes(first)}}, options).ok());
  auto via_grpc = client_->Get(ns_, {"registered"}, Want::kEncoded);
  ASSERT_TRUE(via_grpc.ok());
  const std::string first_encoded((*via_grpc)[0].bytes);

  DeviceMemory src(first.size()), dst(first.size());
  CUDA_ASSERT(cudaMemcpy(src.ptr, first.data(), first.size(), cudaMemcpyHostToDevice));
  auto device_put = [&](const std::string& key) -> Tier {
    DeviceBlockRef block{key, layout, gpu::DeviceBlockView::Contiguous(src.ptr, layout)};
    auto put = device_->PutFromDevice({&block, 1}, options, stream_);
    EXPECT_TRUE(put.ok()) << put.status();
    if (!put.ok() || !(*put)->Wait().ok()) return Tier::kUnspecified;
    return (*put)->put_results()[0].tier;
  };
  // A device get of `key` into dst: whether it was found, and then dst's bytes.
  auto device_get = [&](const std::string& key, std::string* bytes) {
    CUDA_ASSERT(cudaMemset(dst.ptr, 0, first.size()));
    DeviceBlockRef block{key, layout, gpu::DeviceBlockView::Contiguous(dst.ptr, layout)};
    auto get = device_->GetIntoDevice({&block, 1}, stream_);
    ASSERT_TRUE(get.ok()) << get.status();
    ASSERT_TRUE((*get)->Wait().ok()) << (*get)->Wait();
    bytes->clear();
    if (!(*get)->get_results()[0].found) return;
    bytes->resize(first.size());
    CUDA_ASSERT(cudaMemcpy(bytes->data(), dst.ptr, first.size(), cudaMemcpyDeviceToHost));
  };

  EXPECT_EQ(device_put("t"), tier ? Tier::kDevice : Tier::kRam);
  auto decoded = client_->Get(ns_, {"registered"}, Want::kDecoded);
  ASSERT_TRUE(decoded.ok());
  std::string got;
  device_get("t", &got);
  EXPECT_TRUE(got == std::string((*decoded)[0].bytes)) << "device get of a device-tier block";
  // gRPC sees it: the stored bytes are PutBlocks' for the same raw block (same key seed aside:
  // compare with a gRPC put of the same key).
  auto lookup = client_->Lookup(ns_, {"t"});
  ASSERT_TRUE(lookup.ok());
  EXPECT_EQ(lookup->prefix_length, 1u);
  auto encoded = client_->Get(ns_, {"t"}, Want::kEncoded);
  ASSERT_TRUE(encoded.ok());
  ASSERT_TRUE((*encoded)[0].found);
  const std::string device_encoded((*encoded)[0].bytes);
  ASSERT_TRUE(client_->Put(ns_, {{"t", layout, Bytes(first)}}, options).ok());
  auto again = client_->Get(ns_, {"t"}, Want::kEncoded);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(device_encoded, std::string((*again)[0].bytes)) << "device tier and PutBlocks differ";

  // A delete is final, however far the write-behind got.
  for (int round = 0; round < 20; ++round) {
    const std::string key = absl::StrCat("deleted", round);
    device_put(key);
    if (round % 2 == 1) absl::SleepFor(absl::Microseconds(200 * round));
    auto deleted = client_->Delete(ns_, {key});
    ASSERT_TRUE(deleted.ok()) << deleted.status();
    EXPECT_EQ(*deleted, 1u) << key;
  }
  absl::SleepFor(absl::Milliseconds(200));  // every write-behind done
  for (int round = 0; round < 20; ++round) {
    const std::string key = absl::StrCat("deleted", round);
    device_get(key, &got);
    EXPECT_TRUE(got.empty()) << key << " came back after its delete (device get)";
    auto after = client_->Get(ns_, {key}, Want::kEncoded);
    ASSERT_TRUE(after.ok());
    EXPECT_FALSE((*after)[0].found) << key << " came back after its delete (gRPC get)";
  }

  // A gRPC put replaces a device-tier block for device gets too.
  EXPECT_EQ(device_put("r"), tier ? Tier::kDevice : Tier::kRam);
  ASSERT_TRUE(client_->Put(ns_, {{"r", layout, Bytes(second)}}, options).ok());
  ASSERT_TRUE(client_->Put(ns_, {{"second", layout, Bytes(second)}}, options).ok());
  auto second_decoded = client_->Get(ns_, {"second"}, Want::kDecoded);
  ASSERT_TRUE(second_decoded.ok());
  device_get("r", &got);
  EXPECT_TRUE(got == std::string((*second_decoded)[0].bytes)) << "a stale device-tier copy";
}

TEST_F(IpcEdgeTest, ASegmentOutsideItsBufferIsInvalidArgument) {
  const BlockLayout layout = TestLayout();
  DeviceMemory src(layout.RawBytes());
  auto exported = gpu::ExportDevicePointer(src.ptr);
  ASSERT_TRUE(exported.ok()) << exported.status();
  auto stub = v1::KvDeviceService::NewStub(
      grpc::CreateChannel(Target(), grpc::InsecureChannelCredentials()));
  v1::DevicePutRequest request;
  request.set_channel_id(device_->channel_id());
  request.mutable_options()->set_namespace_(ns_);
  v1::IpcBuffer* buffer = request.add_buffers();
  buffer->set_handle(exported->handle);
  buffer->set_size(uint64_t{1} << 40);  // a lie: the server asks the driver
  v1::DeviceBlock* block = request.add_blocks();
  block->set_key("k");
  LayoutToProto(layout, block->mutable_layout());
  for (uint32_t s = 0; s < 2 * layout.layers; ++s) {
    v1::DeviceSegment* segment = block->add_segments();
    segment->set_buffer(0);
    segment->set_offset(exported->allocation_size - 16);  // runs past the allocation
  }
  v1::PutBlocksResponse response;
  grpc::ClientContext context;
  const grpc::Status status = stub->DevicePut(&context, request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << status.error_message();
  // A handle that does not open.
  request.mutable_buffers(0)->set_handle(std::string(64, 'x'));
  grpc::ClientContext context2;
  EXPECT_EQ(stub->DevicePut(&context2, request, &response).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
}

// tests/gpu/ipc_on_device.sh starts the server with --device_channels=8 and
// --device_channel_idle_seconds=3.
TEST_F(IpcEdgeTest, ChannelsAreBoundedAndFreedOnClose) {
  std::vector<std::unique_ptr<DeviceClient>> more;
  absl::Status refused;
  for (int i = 0; i < 16; ++i) {
    auto device = DeviceClient::Open(client_.get(), ns_);
    if (!device.ok()) {
      refused = device.status();
      break;
    }
    more.push_back(*std::move(device));
  }
  EXPECT_TRUE(absl::IsResourceExhausted(refused)) << refused;
  EXPECT_LT(more.size(), 8u);  // the fixture's own channel counts too
  more.clear();                // closes them
  EXPECT_TRUE(DeviceClient::Open(client_.get(), ns_).ok());
}

TEST_F(IpcEdgeTest, ACallMovingMoreThanTheChannelsMaxCallBytesIsRefused) {
  DeviceClientOptions options;
  options.max_call_bytes = 64 << 10;
  auto small = DeviceClient::Open(client_.get(), ns_, options);
  ASSERT_TRUE(small.ok()) << small.status();
  const BlockLayout layout = TestLayout();  // 128 KiB
  DeviceMemory src(layout.RawBytes());
  DeviceBlockRef block{"big", layout, gpu::DeviceBlockView::Contiguous(src.ptr, layout)};
  auto put = (*small)->PutFromDevice({&block, 1}, {}, stream_);
  ASSERT_TRUE(put.ok());
  EXPECT_TRUE(absl::IsResourceExhausted((*put)->Wait())) << (*put)->Wait();
}

TEST_F(IpcEdgeTest, AChannelLeftIdleIsTornDown) {
  const uint64_t id = device_->channel_id();
  absl::SleepFor(absl::Milliseconds(4500));
  auto stub = v1::KvDeviceService::NewStub(
      grpc::CreateChannel(Target(), grpc::InsecureChannelCredentials()));
  v1::DeviceGetRequest request;
  request.set_channel_id(id);
  request.set_namespace_(ns_);
  v1::DeviceGetResponse response;
  grpc::ClientContext context;
  const grpc::Status status = stub->DeviceGet(&context, request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND) << status.error_message();
}

// The blocks of one call are encoded / decoded on the server's lanes in parallel: each must
// still get its own bytes, the results come in request order, and a missing key in the middle
// of a get leaves its neighbours found.
TEST_F(IpcEdgeTest, ManyBlocksOfOneCallKeepTheirOwnBytesAndOrder) {
  const BlockLayout layout = TestLayout();
  constexpr int kBlocks = 16;
  const size_t bytes = layout.RawBytes();
  DeviceMemory src(bytes * kBlocks), dst(bytes * (kBlocks + 1));
  std::vector<std::string> raws;
  std::vector<DeviceBlockRef> in, out;
  for (int i = 0; i < kBlocks; ++i) {
    raws.push_back(RandomBlock(layout, 100 + i));
    CUDA_ASSERT(cudaMemcpy(src.bytes() + i * bytes, raws.back().data(), bytes,
                           cudaMemcpyHostToDevice));
    in.push_back({absl::StrCat("many/", i), layout,
                  gpu::DeviceBlockView::Contiguous(src.bytes() + i * bytes, layout)});
  }
  PutOptions options;
  options.codec = "raw";
  auto put = device_->PutFromDevice(in, options, stream_);
  ASSERT_TRUE(put.ok()) << put.status();
  ASSERT_TRUE((*put)->Wait().ok()) << (*put)->Wait();
  ASSERT_EQ((*put)->put_results().size(), size_t{kBlocks});
  for (int i = 0; i < kBlocks; ++i) EXPECT_EQ((*put)->put_results()[i].key, in[i].key);
  for (int i = 0; i < kBlocks; ++i) {
    auto got = client_->Get(ns_, {in[i].key}, Want::kDecoded);
    ASSERT_TRUE(got.ok() && (*got)[0].found) << in[i].key;
    EXPECT_TRUE(std::string((*got)[0].bytes) == raws[i]) << in[i].key;
  }
  // Get them back with an absent key at position 5.
  for (int i = 0; i <= kBlocks; ++i) {
    const std::string key = i == 5 ? "many/absent" : in[i < 5 ? i : i - 1].key;
    out.push_back({key, layout, gpu::DeviceBlockView::Contiguous(dst.bytes() + i * bytes, layout)});
  }
  CUDA_ASSERT(cudaMemset(dst.ptr, 0, bytes * (kBlocks + 1)));
  auto get = device_->GetIntoDevice(out, stream_);
  ASSERT_TRUE(get.ok()) << get.status();
  ASSERT_TRUE((*get)->Wait().ok()) << (*get)->Wait();
  CUDA_ASSERT(cudaStreamSynchronize(stream_));
  ASSERT_EQ((*get)->get_results().size(), size_t{kBlocks + 1});
  for (int i = 0; i <= kBlocks; ++i) {
    const DeviceGetResult& r = (*get)->get_results()[i];
    EXPECT_EQ(r.key, out[i].key);
    EXPECT_EQ(r.found, i != 5) << i;
    if (i == 5) continue;
    std::string back(bytes, '\0');
    CUDA_ASSERT(cudaMemcpy(back.data(), dst.bytes() + i * bytes, bytes, cudaMemcpyDeviceToHost));
    EXPECT_TRUE(back == raws[i < 5 ? i : i - 1]) << "block " << i;
  }
}

// A DeviceClient asking for an NCCL channel on the server's own GPU: NCCL refuses two ranks on
// one GPU ("Duplicate GPU detected"), and the open must fail, not hang, on both sides; the
// server goes on serving.
TEST_F(IpcEdgeTest, AnNcclClientOnTheServersGpuFailsItsOpenWithoutHanging) {
  ClientOptions options;
  options.target = Target();
  options.timeout = absl::Seconds(8);
  auto client = Client::Connect(options);
  ASSERT_TRUE(client.ok()) << client.status();
  DeviceClientOptions nccl;
  nccl.transport = DeviceTransport::kNccl;
  const absl::Time start = absl::Now();
  auto device = DeviceClient::Open(client->get(), ns_, nccl);
  EXPECT_FALSE(device.ok());
  EXPECT_LT(absl::Now() - start, absl::Seconds(12)) << device.status();
  std::printf("NCCL open on one GPU: %s\n", device.status().ToString().c_str());
  EXPECT_TRUE(client_->Stats().ok());
}

// NCCL refuses two ranks on one GPU, so on one GPU only the server's side runs: a client that
// opens an NCCL channel and never joins must not hang the call that waits for it — the server
// aborts the communicator (ncclCommAbort) at the join deadline (the server's idle timeout, 3 s
// here), fails the call, closes the channel and goes on serving.
TEST_F(IpcEdgeTest, AnNcclPeerThatNeverJoinsIsAbortedNotWaitedFor) {
  auto stub = v1::KvDeviceService::NewStub(
      grpc::CreateChannel(Target(), grpc::InsecureChannelCredentials()));
  v1::OpenChannelRequest open;
  open.set_namespace_(ns_);
  open.set_transport(v1::DEVICE_TRANSPORT_NCCL);
  v1::OpenChannelResponse opened;
  grpc::ClientContext open_context;
  const grpc::Status open_status = stub->OpenChannel(&open_context, open, &opened);
  ASSERT_TRUE(open_status.ok()) << open_status.error_message();
  EXPECT_EQ(opened.nccl_unique_id().size(), 128u);

  v1::DevicePutRequest put;
  put.set_channel_id(opened.channel_id());
  put.mutable_options()->set_namespace_(ns_);
  v1::DeviceBlock* block = put.add_blocks();
  block->set_key("never");
  LayoutToProto(TestLayout(), block->mutable_layout());
  v1::PutBlocksResponse response;
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
  const absl::Time start = absl::Now();
  const grpc::Status status = stub->DevicePut(&context, put, &response);
  const absl::Duration took = absl::Now() - start;
  EXPECT_TRUE(status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED ||
              status.error_code() == grpc::StatusCode::UNAVAILABLE)
      << status.error_code() << " " << status.error_message();
  EXPECT_LT(took, absl::Seconds(15)) << "the server waited past its join deadline";
  // The channel is gone, and the server serves.
  grpc::ClientContext again;
  EXPECT_EQ(stub->DevicePut(&again, put, &response).error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_TRUE(client_->Stats().ok());
}

// Run in a child process by KilledClientLeavesTheServerServing: puts large blocks from its GPU
// in a loop until it is killed.
TEST_F(IpcEdgeTest, VictimClient) {
  if (std::getenv("KVPACK_IPC_VICTIM") == nullptr) GTEST_SKIP() << "child process only";
  BlockLayout layout = TestLayout();
  layout.layers = 32;
  layout.kv_heads = 8;
  layout.tokens = 1024;  // 128 MiB
  DeviceMemory src(layout.RawBytes());
  cudaMemset(src.ptr, 0, layout.RawBytes());
  DeviceBlockRef block{"victim", layout, gpu::DeviceBlockView::Contiguous(src.ptr, layout)};
  std::fprintf(stderr, "victim: putting\n");
  for (;;) {
    auto put = device_->PutFromDevice({&block, 1}, {}, stream_);
    if (put.ok()) (*put)->Wait().IgnoreError();
  }
}

TEST_F(IpcEdgeTest, KilledClientLeavesTheServerServing) {
  char self[4096];
  const ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
  ASSERT_GT(n, 0);
  self[n] = '\0';
  std::string filter = "--gtest_filter=IpcEdgeTest.VictimClient";
  char* argv[] = {self, filter.data(), nullptr};
  std::vector<std::string> env_strings = {"KVPACK_IPC_VICTIM=1",
                                          absl::StrCat("KVPACK_TEST_TARGET=", Target())};
  for (char** e = environ; *e != nullptr; ++e) env_strings.push_back(*e);
  std::vector<char*> env;
  for (std::string& s : env_strings) env.push_back(s.data());
  env.push_back(nullptr);
  pid_t child = 0;
  ASSERT_EQ(posix_spawn(&child, self, nullptr, nullptr, argv, env.data()), 0);
  absl::SleepFor(absl::Milliseconds(1500));  // CUDA start-up, then puts in flight
  kill(child, SIGKILL);
  int status = 0;
  waitpid(child, &status, 0);
  EXPECT_TRUE(WIFSIGNALED(status));

  // The server goes on serving device and gRPC calls.
  const BlockLayout layout = TestLayout();
  const std::string raw = RandomBlock(layout, 11);
  DeviceMemory src(raw.size());
  CUDA_ASSERT(cudaMemcpy(src.ptr, raw.data(), raw.size(), cudaMemcpyHostToDevice));
  DeviceBlockRef block{"after", layout, gpu::DeviceBlockView::Contiguous(src.ptr, layout)};
  auto put = device_->PutFromDevice({&block, 1}, {}, stream_);
  ASSERT_TRUE(put.ok());
  EXPECT_TRUE((*put)->Wait().ok()) << (*put)->Wait();
  auto got = client_->Get(ns_, {"after"}, Want::kDecoded);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_TRUE((*got)[0].found);
}

}  // namespace
}  // namespace kvpack

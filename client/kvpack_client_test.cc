// Client behaviour over real gRPC against an in-process fake KvCacheService: chunking of
// large blocks in both directions, retries on UNAVAILABLE only, deadlines covering retries,
// and picking a restarted server up again.
#include "client/kvpack_client.h"

#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "kvpack/v1/kvpack.grpc.pb.h"

namespace kvpack {
namespace {

// Stores blocks by namespace and key, answers gets in `get_chunk_bytes` pieces, and can be
// told to fail the next calls with a given status.
class FakeService final : public v1::KvCacheService::Service {
 public:
  explicit FakeService(size_t get_chunk_bytes) : get_chunk_bytes_(get_chunk_bytes) {}

  void FailNext(int calls, grpc::Status status) {
    absl::MutexLock lock(&mu_);
    fail_calls_ = calls;
    fail_status_ = status;
  }
  int calls() const { return calls_.load(); }
  size_t largest_put_message() const { return largest_put_message_.load(); }

  grpc::Status PutBlocks(grpc::ServerContext*, grpc::ServerReader<v1::PutBlocksRequest>* reader,
                         v1::PutBlocksResponse* response) override {
    if (grpc::Status s = Admit(); !s.ok()) return s;
    v1::PutBlocksRequest request;
    std::string ns, key;
    std::string data;
    bool first = true;
    auto finish_block = [&] {
      if (key.empty()) return;
      v1::PutResult* result = response->add_results();
      result->set_key(key);
      result->set_raw_bytes(data.size());
      result->set_encoded_bytes(data.size());
      result->set_tier(v1::TIER_RAM);
      absl::MutexLock lock(&mu_);
      blocks_[ns + "/" + key] = data;
    };
    while (reader->Read(&request)) {
      size_t seen = largest_put_message_.load();
      while (request.ByteSizeLong() > seen &&
             !largest_put_message_.compare_exchange_weak(seen, request.ByteSizeLong())) {
      }
      if (first) {
        if (!request.has_options()) {
          return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "no options");
        }
        ns = request.options().namespace_();
        first = false;
      }
      if (!request.key().empty()) {
        finish_block();
        key = request.key();
        data.clear();
      }
      data += request.data();
    }
    finish_block();
    return grpc::Status::OK;
  }

  grpc::Status GetBlocks(grpc::ServerContext*, const v1::GetBlocksRequest* request,
                         grpc::ServerWriter<v1::GetBlocksResponse>* writer) override {
    if (grpc::Status s = Admit(); !s.ok()) return s;
    for (const std::string& key : request->keys()) {
      std::string data;
      bool found = false;
      {
        absl::MutexLock lock(&mu_);
        auto it = blocks_.find(request->namespace_() + "/" + key);
        if (it != blocks_.end()) {
          found = true;
          data = it->second;
        }
      }
      v1::GetBlocksResponse response;
      response.set_key(key);
      response.set_found(found);
      if (found) {
        response.mutable_layout()->CopyFrom(layout_);
        response.set_codec("raw");
        response.set_tier(v1::TIER_RAM);
        response.set_total_bytes(data.size());
      }
      size_t offset = 0;
      do {
        const size_t n = std::min(get_chunk_bytes_, data.size() - offset);
        response.set_offset(offset);
        response.set_data(data.substr(offset, n));
        writer->Write(response);
        response.Clear();
        offset += n;
      } while (offset < data.size());
    }
    return grpc::Status::OK;
  }

  grpc::Status Lookup(grpc::ServerContext*, const v1::LookupRequest* request,
                      v1::LookupResponse* response) override {
    if (grpc::Status s = Admit(); !s.ok()) return s;
    absl::MutexLock lock(&mu_);
    for (const std::string& key : request->keys()) {
      if (!blocks_.count(request->namespace_() + "/" + key)) break;
      response->set_prefix_length(response->prefix_length() + 1);
      response->add_tiers(v1::TIER_RAM);
    }
    return grpc::Status::OK;
  }

  void set_layout(const v1::BlockLayout& layout) { layout_ = layout; }

 private:
  grpc::Status Admit() {
    calls_.fetch_add(1);
    absl::MutexLock lock(&mu_);
    if (fail_calls_ != 0) {
      if (fail_calls_ > 0) --fail_calls_;
      return fail_status_;
    }
    return grpc::Status::OK;
  }

  const size_t get_chunk_bytes_;
  v1::BlockLayout layout_;
  std::atomic<int> calls_{0};
  std::atomic<size_t> largest_put_message_{0};
  absl::Mutex mu_;
  std::map<std::string, std::string> blocks_ ABSL_GUARDED_BY(mu_);
  int fail_calls_ ABSL_GUARDED_BY(mu_) = 0;  // -1: every call
  grpc::Status fail_status_ ABSL_GUARDED_BY(mu_);
};

BlockLayout BigLayout() {  // 32 x 2 x 40 x 8 x 128 bf16 = 5 MiB, over gRPC's 4 MiB default
  BlockLayout layout;
  layout.layers = 32;
  layout.kv_heads = 8;
  layout.head_dim = 128;
  layout.tokens = 40;
  layout.dtype = DType::kBFloat16;
  return layout;
}

class KvpackClientTest : public ::testing::Test {
 protected:
  void StartServer(int port = 0) {
    grpc::ServerBuilder builder;
    builder.AddListeningPort(absl::StrCat("127.0.0.1:", port), grpc::InsecureServerCredentials(),
                             &port_);
    builder.SetMaxReceiveMessageSize(64 << 20);
    builder.SetMaxSendMessageSize(64 << 20);
    builder.RegisterService(&service_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    ASSERT_GT(port_, 0);
  }

  void StopServer() {
    server_->Shutdown(std::chrono::system_clock::now());
    server_->Wait();
    server_.reset();
  }

  std::unique_ptr<Client> Connect(ClientOptions options = ClientOptions()) {
    options.target = absl::StrCat("127.0.0.1:", port_);
    absl::StatusOr<std::unique_ptr<Client>> client = Client::Connect(options);
    EXPECT_TRUE(client.ok()) << client.status();
    return client.ok() ? *std::move(client) : nullptr;
  }

  void TearDown() override {
    if (server_ != nullptr) StopServer();
  }

  FakeService service_{size_t{3} << 20};  // 3 MiB get chunks: 5 MiB blocks take two
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
};

TEST_F(KvpackClientTest, LargeBlockRoundTripsInChunksBothWays) {
  StartServer();
  const BlockLayout layout = BigLayout();
  v1::BlockLayout wire;
  wire.set_layers(layout.layers);
  wire.set_kv_heads(layout.kv_heads);
  wire.set_head_dim(layout.head_dim);
  wire.set_tokens(layout.tokens);
  wire.set_dtype(v1::DTYPE_BFLOAT16);
  service_.set_layout(wire);
  std::vector<uint8_t> data(layout.RawBytes());
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<uint8_t>(i * 131 + (i >> 16));

  std::unique_ptr<Client> client = Connect();
  ASSERT_NE(client, nullptr);
  absl::StatusOr<std::vector<PutResult>> put =
      client->Put("ns", {PutBlock{"big", layout, data}, PutBlock{"big2", layout, data}});
  ASSERT_TRUE(put.ok()) << put.status();
  ASSERT_EQ(put->size(), 2u);
  EXPECT_EQ((*put)[0].raw_bytes, layout.RawBytes());
  EXPECT_LE(service_.largest_put_message(), client->options().chunk_bytes + 1024);

  absl::StatusOr<std::vector<GetResult>> got = client->Get("ns", {"big2", "absent", "big"});
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(got->size(), 3u);
  const std::string expected(data.begin(), data.end());
  EXPECT_TRUE((*got)[0].found);
  EXPECT_TRUE((*got)[0].bytes == expected);
  EXPECT_FALSE((*got)[1].found);
  EXPECT_TRUE((*got)[2].bytes == expected);
  EXPECT_EQ((*got)[2].layout, layout);
}

TEST_F(KvpackClientTest, RetriesUnavailableUntilItSucceeds) {
  StartServer();
  std::unique_ptr<Client> client = Connect();
  ASSERT_NE(client, nullptr);
  service_.FailNext(2, grpc::Status(grpc::StatusCode::UNAVAILABLE, "draining"));
  absl::StatusOr<LookupResult> lookup = client->Lookup("ns", {"a"});
  ASSERT_TRUE(lookup.ok()) << lookup.status();
  EXPECT_EQ(lookup->prefix_length, 0u);
  EXPECT_EQ(service_.calls(), 3);
}

TEST_F(KvpackClientTest, GivesUpAfterMaxRetries) {
  StartServer();
  ClientOptions options;
  options.max_retries = 3;
  options.initial_backoff = absl::Milliseconds(1);
  options.max_backoff = absl::Milliseconds(5);
  std::unique_ptr<Client> client = Connect(options);
  ASSERT_NE(client, nullptr);
  service_.FailNext(-1, grpc::Status(grpc::StatusCode::UNAVAILABLE, "draining"));
  const absl::Status status = client->Lookup("ns", {"a"}).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(status.message().find("after 4 attempts"), absl::string_view::npos) << status;
  EXPECT_NE(status.message().find("draining"), absl::string_view::npos) << status;
  EXPECT_EQ(service_.calls(), 4);
}

TEST_F(KvpackClientTest, OtherErrorsReturnAtOnceWithTheServersMessage) {
  StartServer();
  std::unique_ptr<Client> client = Connect();
  ASSERT_NE(client, nullptr);
  service_.FailNext(1, grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, "over memory bound"));
  const absl::Status status = client->Get("ns", {"a"}).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(status.message(), "over memory bound");
  EXPECT_EQ(service_.calls(), 1);
}

TEST_F(KvpackClientTest, DeadlineCoversAllRetries) {
  StartServer();
  ClientOptions options;
  options.timeout = absl::Milliseconds(300);
  options.max_retries = 1000;
  options.initial_backoff = absl::Milliseconds(20);
  options.max_backoff = absl::Milliseconds(40);
  std::unique_ptr<Client> client = Connect(options);
  ASSERT_NE(client, nullptr);
  service_.FailNext(-1, grpc::Status(grpc::StatusCode::UNAVAILABLE, "draining"));
  const absl::Time start = absl::Now();
  const absl::Status status = client->Lookup("ns", {"a"}).status();
  // UNAVAILABLE when the client saw no time left for another attempt, DEADLINE_EXCEEDED when
  // the deadline passed during one; never success, never a retry past the deadline.
  EXPECT_TRUE(status.code() == absl::StatusCode::kUnavailable ||
              status.code() == absl::StatusCode::kDeadlineExceeded)
      << status;
  EXPECT_LT(absl::Now() - start, absl::Seconds(2));
  EXPECT_GT(service_.calls(), 1);
}

TEST_F(KvpackClientTest, PicksUpARestartedServer) {
  StartServer();
  ClientOptions options;
  options.initial_backoff = absl::Milliseconds(20);
  options.max_backoff = absl::Milliseconds(200);
  options.max_retries = 50;
  options.timeout = absl::Seconds(20);
  std::unique_ptr<Client> client = Connect(options);
  ASSERT_NE(client, nullptr);
  ASSERT_TRUE(client->Lookup("ns", {"a"}).ok());

  const int port = port_;
  StopServer();
  std::thread restart([&] {
    absl::SleepFor(absl::Milliseconds(500));
    StartServer(port);
  });
  // Issued while nothing listens; succeeds once the server is back.
  const absl::Time start = absl::Now();
  absl::StatusOr<LookupResult> lookup = client->Lookup("ns", {"a"});
  restart.join();
  ASSERT_TRUE(lookup.ok()) << lookup.status();
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(400));
  EXPECT_EQ(port_, port);
}

TEST_F(KvpackClientTest, ConnectFailsWhenNothingListens) {
  StartServer();
  const int port = port_;
  StopServer();
  ClientOptions options;
  options.target = absl::StrCat("127.0.0.1:", port);
  options.connect_timeout = absl::Milliseconds(200);
  EXPECT_EQ(Client::Connect(options).status().code(), absl::StatusCode::kUnavailable);
}

TEST_F(KvpackClientTest, RejectsBadOptionsAndRequestsBeforeSending) {
  ClientOptions options;
  options.chunk_bytes = options.max_message_bytes;
  EXPECT_EQ(Client::Connect(options).status().code(), absl::StatusCode::kInvalidArgument);
  options = ClientOptions();
  options.connections = 0;
  EXPECT_EQ(Client::Connect(options).status().code(), absl::StatusCode::kInvalidArgument);

  StartServer();
  std::unique_ptr<Client> client = Connect();
  ASSERT_NE(client, nullptr);
  EXPECT_EQ(client->Get("", {"a"}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(client->Lookup("ns", {""}).status().code(), absl::StatusCode::kInvalidArgument);
  const std::vector<uint8_t> short_data(10);
  EXPECT_EQ(client->Put("ns", {PutBlock{"k", BigLayout(), short_data}}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(service_.calls(), 0);
}

}  // namespace
}  // namespace kvpack

// Shutdown drains: a call already in flight when the server is asked to stop runs to its end
// and returns every block; calls that arrive after the stop are refused.
#include <memory>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "client/kvpack_client.h"
#include "absl/time/clock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "kvpack/v1/kvpack.grpc.pb.h"
#include "tests/testing/block_data.h"
#include "tests/testing/test_server.h"

namespace kvpack {
namespace {

TEST(ShutdownTest, InFlightGetCompletesWhileTheServerStops) {
  auto server = TestServer::Start();
  ClientOptions options;
  options.target = server->target();
  auto client = Client::Connect(options);
  ASSERT_TRUE(client.ok()) << client.status();

  // 24 MiB in all: more than HTTP/2 flow control lets the server push ahead of the reader,
  // so the server is still mid-stream while it shuts down.
  constexpr int kBlocks = 24;
  BlockLayout layout = SmallLayout();
  layout.tokens = 512;  // 1 MiB
  std::vector<std::string> raws;
  std::vector<PutBlock> blocks;
  v1::GetBlocksRequest request;
  request.set_namespace_("ns");
  for (int i = 0; i < kBlocks; ++i) raws.push_back(RandomBlock(layout, i));
  for (int i = 0; i < kBlocks; ++i) {
    blocks.push_back(PutBlock{absl::StrCat("k", i), layout, Bytes(raws[i])});
    request.add_keys(absl::StrCat("k", i));
  }
  PutOptions raw;
  raw.codec = "raw";
  ASSERT_TRUE((*client)->Put("ns", blocks, raw).ok());

  auto stub = v1::KvCacheService::NewStub(
      grpc::CreateChannel(server->target(), grpc::InsecureChannelCredentials()));
  grpc::ClientContext context;
  auto reader = stub->GetBlocks(&context, request);
  v1::GetBlocksResponse response;
  ASSERT_TRUE(reader->Read(&response));  // the call is now in flight on the server
  int blocks_seen = 1;
  std::string first = response.data();

  std::thread stopper([&server] { server->Stop(); });
  // Wait until the server refuses new calls: shutdown has begun, with our call in flight.
  while (true) {
    grpc::ClientContext probe;
    probe.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(200));
    v1::LookupRequest lookup;
    lookup.set_namespace_("ns");
    lookup.add_keys("k0");
    v1::LookupResponse answer;
    if (!stub->Lookup(&probe, lookup, &answer).ok()) break;
  }
  while (reader->Read(&response)) ++blocks_seen;
  const grpc::Status status = reader->Finish();
  stopper.join();
  // GetBlocks sends each 1 MiB block as one message.

  EXPECT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(blocks_seen, kBlocks);
  EXPECT_EQ(first, raws[0]);

  // The server is gone now: a new call is refused.
  grpc::ClientContext late;
  late.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(500));
  v1::LookupRequest lookup;
  lookup.set_namespace_("ns");
  lookup.add_keys("k0");
  v1::LookupResponse answer;
  EXPECT_FALSE(stub->Lookup(&late, lookup, &answer).ok());
}

TEST(ShutdownTest, HealthSaysNotServingWhileTheServerStillServes) {
  TestServerOptions options;
  options.shutdown_announce_ms = 5000;  // room for the checks below on a busy machine
  auto server = TestServer::Start(options);
  auto channel = grpc::CreateChannel(server->target(), grpc::InsecureChannelCredentials());
  auto health = grpc::health::v1::Health::NewStub(channel);
  auto stub = v1::KvCacheService::NewStub(channel);
  auto check = [&health] {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
    grpc::health::v1::HealthCheckRequest request;
    grpc::health::v1::HealthCheckResponse response;
    grpc::Status status = health->Check(&context, request, &response);
    return status.ok() ? response.status() : grpc::health::v1::HealthCheckResponse::UNKNOWN;
  };
  ASSERT_EQ(check(), grpc::health::v1::HealthCheckResponse::SERVING);

  std::thread stopper([&server] { server->Stop(); });
  const absl::Time give_up = absl::Now() + absl::Seconds(2);
  while (check() != grpc::health::v1::HealthCheckResponse::NOT_SERVING && absl::Now() < give_up) {
  }
  EXPECT_EQ(check(), grpc::health::v1::HealthCheckResponse::NOT_SERVING);
  grpc::ClientContext context;
  v1::GetStatsRequest request;
  v1::GetStatsResponse response;
  EXPECT_TRUE(stub->GetStats(&context, request, &response).ok())
      << "the server stops serving only after the announce period";
  stopper.join();
}

}  // namespace
}  // namespace kvpack

// Per-call authentication and per-namespace authorization against a real server on loopback:
// every RPC by every kind of caller gets the exact status code; a caller without a grant
// learns nothing about which namespaces exist; health checking stays open.
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "client/kvpack_client.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "kvpack/v1/kvpack.grpc.pb.h"
#include "tests/auth/token_files.h"
#include "tests/testing/block_data.h"
#include "tests/testing/test_server.h"

namespace kvpack {
namespace {

using Code = absl::StatusCode;

constexpr char kAdmin[] = "kvp_admin-token";
constexpr char kTenantA[] = "kvp_tenant-a-full";   // read, write, delete on tenant-a
constexpr char kReaderA[] = "kvp_tenant-a-reader";  // read on tenant-a
constexpr char kTenantB[] = "kvp_tenant-b-full";   // read, write, delete on tenant-b
constexpr char kTeams[] = "kvp_teams";             // read, write on every team/ namespace

enum class Rpc { kPut, kGet, kLookup, kDelete, kStats };
constexpr Rpc kRpcs[] = {Rpc::kPut, Rpc::kGet, Rpc::kLookup, Rpc::kDelete, Rpc::kStats};

const char* RpcName(Rpc rpc) {
  switch (rpc) {
    case Rpc::kPut: return "PutBlocks";
    case Rpc::kGet: return "GetBlocks";
    case Rpc::kLookup: return "Lookup";
    case Rpc::kDelete: return "DeleteBlocks";
    case Rpc::kStats: return "GetStats";
  }
  return "?";
}

// A server with the token file above, and blocks under "seeded" in tenant-a and tenant-b.
class AuthTest : public ::testing::Test {
 protected:
  void SetUp() override {
    tokens_path_ = MakeTempDir("auth") + "/tokens";
    WriteTokenFile(tokens_path_, {
                                     GrantLine(kAdmin, "read,write,delete,admin", "*"),
                                     GrantLine(kTenantA, "read,write,delete", "tenant-a"),
                                     GrantLine(kReaderA, "read", "tenant-a"),
                                     GrantLine(kTenantB, "read,write,delete", "tenant-b"),
                                     GrantLine(kTeams, "read,write", "team/*"),
                                 });
    TestServerOptions options;
    options.auth_tokens = tokens_path_;
    server_ = TestServer::Start(options);
    block_ = RandomBlock(SmallLayout(), 7);
    std::unique_ptr<Client> admin = ConnectWithToken(server_->target(), kAdmin);
    for (const char* ns : {"tenant-a", "tenant-b"}) {
      ASSERT_TRUE(admin->Put(ns, {PutBlock{"seeded", SmallLayout(), Bytes(block_)}}).ok());
    }
  }

  // The status of `rpc` on namespace `ns` by a client sending `token` ("" = none).
  absl::Status Call(const std::string& token, Rpc rpc, const std::string& ns) {
    std::unique_ptr<Client> client = ConnectWithToken(server_->target(), token);
    switch (rpc) {
      case Rpc::kPut:
        return client->Put(ns, {PutBlock{"new-key", SmallLayout(), Bytes(block_)}}).status();
      case Rpc::kGet: {
        absl::StatusOr<std::vector<GetResult>> got = client->Get(ns, {"seeded"});
        if (got.ok() && !(*got)[0].found) return absl::InternalError("seeded block not found");
        return got.status();
      }
      case Rpc::kLookup:
        return client->Lookup(ns, {"seeded"}).status();
      case Rpc::kDelete:
        return client->Delete(ns, {"not-stored"}).status();
      case Rpc::kStats:
        return client->Stats().status();
    }
    return absl::InternalError("no such rpc");
  }

  std::string tokens_path_;
  std::unique_ptr<TestServer> server_;
  std::string block_;
};

struct Row {
  const char* caller;
  std::string token;
  // The expected code of Put, Get, Lookup, Delete, Stats, each on tenant-a.
  std::vector<Code> codes;
};

TEST_F(AuthTest, EveryRpcByEveryKindOfCaller) {
  const Code kOk = Code::kOk, kUnauth = Code::kUnauthenticated, kDenied = Code::kPermissionDenied;
  const Row rows[] = {
      {"no token", "", {kUnauth, kUnauth, kUnauth, kUnauth, kUnauth}},
      {"unknown token", "kvp_nobody", {kUnauth, kUnauth, kUnauth, kUnauth, kUnauth}},
      {"token for another namespace", kTenantB, {kDenied, kDenied, kDenied, kDenied, kOk}},
      {"read-only token", kReaderA, {kDenied, kOk, kOk, kDenied, kOk}},
      {"valid token", kTenantA, {kOk, kOk, kOk, kOk, kOk}},
  };
  for (const Row& row : rows) {
    for (size_t i = 0; i < std::size(kRpcs); ++i) {
      const absl::Status status = Call(row.token, kRpcs[i], "tenant-a");
      EXPECT_EQ(status.code(), row.codes[i])
          << row.caller << ", " << RpcName(kRpcs[i]) << ": " << status;
    }
  }
}

TEST_F(AuthTest, UnauthenticatedCallsSayWhatIsMissing) {
  const absl::Status none = Call("", Rpc::kLookup, "tenant-a");
  EXPECT_EQ(none.message(), "no token: send authorization: Bearer <token>");
  const absl::Status unknown = Call("kvp_nobody", Rpc::kGet, "tenant-a");
  EXPECT_EQ(unknown.message(), "unknown token");
  const absl::Status denied = Call(kReaderA, Rpc::kPut, "tenant-a");
  EXPECT_EQ(denied.message(), "this token has no write right on namespace 'tenant-a'");
}

TEST_F(AuthTest, ARevokedTokenSeesTheSameAsAnUnknownOne) {
  // A token of the right shape but one character off, and an empty "Bearer": both unknown.
  std::string near = kTenantA;
  near.back() ^= 1;
  EXPECT_EQ(Call(near, Rpc::kLookup, "tenant-a").code(), Code::kUnauthenticated);
}

TEST_F(AuthTest, AuthorizationThatIsNotBearerIsUnauthenticated) {
  auto stub = v1::KvCacheService::NewStub(
      grpc::CreateChannel(server_->target(), grpc::InsecureChannelCredentials()));
  for (const std::string& header : {absl::StrCat("Basic ", kTenantA), std::string(kTenantA),
                                    std::string("Bearer")}) {
    grpc::ClientContext context;
    context.AddMetadata("authorization", header);
    v1::LookupRequest request;
    request.set_namespace_("tenant-a");
    request.add_keys("seeded");
    v1::LookupResponse response;
    const grpc::Status status = stub->Lookup(&context, request, &response);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED) << header;
  }
  grpc::ClientContext context;  // the scheme is case-insensitive
  context.AddMetadata("authorization", absl::StrCat("bearer ", kTenantA));
  v1::LookupRequest request;
  request.set_namespace_("tenant-a");
  request.add_keys("seeded");
  v1::LookupResponse response;
  EXPECT_TRUE(stub->Lookup(&context, request, &response).ok());
  EXPECT_EQ(response.prefix_length(), 1u);
}

// Without a grant, an existing namespace and one that never held a block give the same answer
// (code and message but for the name), so a caller cannot probe which tenants exist.
TEST_F(AuthTest, NoGrantAnswersTheSameWhetherOrNotTheNamespaceExists) {
  for (Rpc rpc : {Rpc::kPut, Rpc::kGet, Rpc::kLookup, Rpc::kDelete}) {
    const absl::Status existing = Call(kTenantA, rpc, "tenant-b");
    const absl::Status missing = Call(kTenantA, rpc, "tenant-zz");
    EXPECT_EQ(existing.code(), Code::kPermissionDenied) << RpcName(rpc) << ": " << existing;
    EXPECT_EQ(missing.code(), Code::kPermissionDenied) << RpcName(rpc) << ": " << missing;
    EXPECT_EQ(absl::StrReplaceAll(existing.message(), {{"tenant-b", "NS"}}),
              absl::StrReplaceAll(missing.message(), {{"tenant-zz", "NS"}}))
        << RpcName(rpc);
  }
  // The same for a prefix grant: team/* covers neither.
  EXPECT_EQ(Call(kTeams, Rpc::kGet, "tenant-b").code(), Code::kPermissionDenied);
  EXPECT_EQ(Call(kTeams, Rpc::kGet, "tenant-zz").code(), Code::kPermissionDenied);
}

// With a grant, today's answers stand: an unknown namespace is NOT_FOUND for Get and Lookup,
// and Delete deletes nothing from it.
TEST_F(AuthTest, WithAGrantAMissingNamespaceIsNotFoundAsWithoutAuth) {
  EXPECT_EQ(Call(kTeams, Rpc::kGet, "team/never").code(), Code::kNotFound);
  EXPECT_EQ(Call(kTeams, Rpc::kLookup, "team/never").code(), Code::kNotFound);
  EXPECT_EQ(Call(kAdmin, Rpc::kDelete, "team/never").code(), Code::kOk);
  EXPECT_EQ(Call(kTeams, Rpc::kPut, "team/new").code(), Code::kOk);
  EXPECT_EQ(Call(kTeams, Rpc::kPut, "team").code(), Code::kPermissionDenied);  // not team/...
}

TEST_F(AuthTest, ADeniedPutStoresNothing) {
  EXPECT_EQ(Call(kReaderA, Rpc::kPut, "tenant-a").code(), Code::kPermissionDenied);
  EXPECT_EQ(Call(kTenantA, Rpc::kPut, "tenant-b").code(), Code::kPermissionDenied);
  std::unique_ptr<Client> admin = ConnectWithToken(server_->target(), kAdmin);
  for (const char* ns : {"tenant-a", "tenant-b"}) {
    absl::StatusOr<LookupResult> lookup = admin->Lookup(ns, {"new-key"});
    ASSERT_TRUE(lookup.ok()) << lookup.status();
    EXPECT_EQ(lookup->prefix_length, 0u) << ns;
  }
}

TEST_F(AuthTest, ADeniedDeleteDeletesNothing) {
  std::unique_ptr<Client> reader = ConnectWithToken(server_->target(), kReaderA);
  EXPECT_EQ(reader->Delete("tenant-a", {"seeded"}).status().code(), Code::kPermissionDenied);
  absl::StatusOr<LookupResult> lookup = reader->Lookup("tenant-a", {"seeded"});
  ASSERT_TRUE(lookup.ok()) << lookup.status();
  EXPECT_EQ(lookup->prefix_length, 1u);
}

TEST_F(AuthTest, HealthCheckingNeedsNoToken) {
  auto health = grpc::health::v1::Health::NewStub(
      grpc::CreateChannel(server_->target(), grpc::InsecureChannelCredentials()));
  for (const char* service : {"", "kvpack.v1.KvCacheService"}) {
    grpc::ClientContext context;
    grpc::health::v1::HealthCheckRequest request;
    request.set_service(service);
    grpc::health::v1::HealthCheckResponse response;
    ASSERT_TRUE(health->Check(&context, request, &response).ok()) << service;
    EXPECT_EQ(response.status(), grpc::health::v1::HealthCheckResponse::SERVING);
  }
}

TEST_F(AuthTest, UnauthenticatedCallsAreCountedByCode) {
  EXPECT_EQ(Call("", Rpc::kLookup, "tenant-a").code(), Code::kUnauthenticated);
  EXPECT_EQ(Call(kReaderA, Rpc::kDelete, "tenant-a").code(), Code::kPermissionDenied);
  const std::string metrics = HttpGet(server_->metrics_port(), "/metrics");
  EXPECT_NE(metrics.find("kvpack_requests_total{code=\"UNAUTHENTICATED\",method=\"Lookup\"} 1"),
            std::string::npos);
  EXPECT_NE(
      metrics.find("kvpack_requests_total{code=\"PERMISSION_DENIED\",method=\"DeleteBlocks\"} 1"),
      std::string::npos);
  EXPECT_NE(metrics.find("kvpack_auth_grants 5"), std::string::npos);
}

}  // namespace
}  // namespace kvpack

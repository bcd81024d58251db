#include "client/cli_common.h"

#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kvpack {
namespace cli {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// layers, kv_heads, head_dim, tokens, dtype
constexpr BlockLayout kLayout = {32, 8, 128, 16, DType::kBFloat16};

TEST(ShapeFlagsTest, DefaultsGiveTheLayoutTheyWereMadeOf) {
  ShapeFlags shape = ShapeFlags::Of(kLayout);
  FlagSet set("test", "Tests shape flags.");
  AddShapeFlags(&shape, &set);
  bool help = false;
  ASSERT_TRUE(set.Parse({}, &help).ok());
  absl::StatusOr<BlockLayout> layout = LayoutFromFlags(shape);
  ASSERT_TRUE(layout.ok()) << layout.status();
  EXPECT_EQ(*layout, kLayout);

  const std::string usage = set.Usage();
  EXPECT_THAT(usage, HasSubstr("--layers (default 32)"));
  EXPECT_THAT(usage, HasSubstr("--dtype (default \"bf16\")"));
  EXPECT_THAT(usage, Not(HasSubstr("(required)")));
}

TEST(ShapeFlagsTest, ParsedFlagsGiveTheLayout) {
  ShapeFlags shape;
  FlagSet set("test", "Tests shape flags.");
  AddShapeFlags(&shape, &set);
  bool help = false;
  ASSERT_TRUE(set.Parse({"--layers=2", "--kv_heads=4", "--head_dim=64", "--tokens=8",
                         "--dtype=fp16"},
                        &help)
                  .ok());
  absl::StatusOr<BlockLayout> layout = LayoutFromFlags(shape);
  ASSERT_TRUE(layout.ok()) << layout.status();
  EXPECT_EQ(layout->DebugString(), "layers=2 kv_heads=4 head_dim=64 tokens=8 dtype=fp16");
}

TEST(ShapeFlagsTest, ZeroDefaultsAreRequiredFlags) {
  ShapeFlags shape;
  FlagSet set("test", "Tests shape flags.");
  AddShapeFlags(&shape, &set);
  EXPECT_THAT(set.Usage(), HasSubstr("layers per block (required)"));

  absl::StatusOr<BlockLayout> layout = LayoutFromFlags(shape);
  EXPECT_EQ(layout.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(layout.status().message(), HasSubstr("--layers"));
}

TEST(ShapeFlagsTest, UnknownDTypeNamesTheFlag) {
  ShapeFlags shape = ShapeFlags::Of(kLayout);
  shape.dtype = "int3";
  absl::StatusOr<BlockLayout> layout = LayoutFromFlags(shape);
  EXPECT_EQ(layout.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(layout.status().message(), HasSubstr("--dtype"));
}

std::string WriteTempFile(const std::string& name, const std::string& contents) {
  const char* base = std::getenv("TEST_TMPDIR");
  const std::string path = std::string(base != nullptr ? base : "/tmp") + "/" + name;
  std::ofstream(path, std::ios::trunc) << contents;
  return path;
}

TEST(GlobalFlagsTest, TokenFileIsReadAndTrimmed) {
  GlobalFlags flags;
  FlagSet set("test", "Tests global flags.");
  AddGlobalFlags(&flags, &set);
  bool help = false;
  const std::string path = WriteTempFile("token", "  kvp_secret\n");
  ASSERT_TRUE(set.Parse({"--token_file=" + path}, &help).ok());
  absl::StatusOr<ClientOptions> options = ClientOptionsFromFlags(flags);
  ASSERT_TRUE(options.ok()) << options.status();
  EXPECT_EQ(options->token, "kvp_secret");
}

TEST(GlobalFlagsTest, InlineTokenIsPassedOn) {
  GlobalFlags flags;
  flags.token = "kvp_inline";
  absl::StatusOr<ClientOptions> options = ClientOptionsFromFlags(flags);
  ASSERT_TRUE(options.ok()) << options.status();
  EXPECT_EQ(options->token, "kvp_inline");
  flags.token.clear();
  EXPECT_EQ(ClientOptionsFromFlags(flags)->token, "");  // no token: none sent
}

TEST(GlobalFlagsTest, BadTokenFlagsAreErrorsThatNeverShowTheToken) {
  GlobalFlags both;
  both.token = "kvp_secret";
  both.token_file = WriteTempFile("token2", "kvp_secret\n");
  absl::Status status = ClientOptionsFromFlags(both).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), Not(HasSubstr("kvp_secret")));

  GlobalFlags empty;
  empty.token_file = WriteTempFile("token3", "\n");
  EXPECT_EQ(ClientOptionsFromFlags(empty).status().code(), absl::StatusCode::kInvalidArgument);

  GlobalFlags missing;
  missing.token_file = "/nonexistent/token";
  status = ClientOptionsFromFlags(missing).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(status.message(), HasSubstr("/nonexistent/token"));
}

TEST(GlobalFlagsTest, PlaintextByDefault) {
  GlobalFlags globals;
  FlagSet set("test", "Tests global flags.");
  AddGlobalFlags(&globals, &set);
  bool help = false;
  ASSERT_TRUE(set.Parse({"--server=10.0.0.7:50051"}, &help).ok());
  absl::StatusOr<ClientOptions> options = ClientOptionsFromFlags(globals);
  ASSERT_TRUE(options.ok()) << options.status();
  EXPECT_EQ(options->target, "10.0.0.7:50051");
  EXPECT_FALSE(options->tls.enabled);
}

TEST(GlobalFlagsTest, TlsFlagsFillTheClientsTlsOptions) {
  GlobalFlags globals;
  FlagSet set("test", "Tests global flags.");
  AddGlobalFlags(&globals, &set);
  bool help = false;
  ASSERT_TRUE(set.Parse({"--tls_ca=ca.pem", "--tls_cert=client.pem", "--tls_key=client.key",
                         "--tls_server_name=kvpack.internal"},
                        &help)
                  .ok());
  absl::StatusOr<ClientOptions> options = ClientOptionsFromFlags(globals, 3);
  ASSERT_TRUE(options.ok()) << options.status();
  EXPECT_TRUE(options->tls.enabled);
  EXPECT_EQ(options->tls.ca_file, "ca.pem");
  EXPECT_EQ(options->tls.cert_file, "client.pem");
  EXPECT_EQ(options->tls.key_file, "client.key");
  EXPECT_EQ(options->tls.server_name, "kvpack.internal");
  EXPECT_EQ(options->connections, 3);
}

TEST(GlobalFlagsTest, TlsAloneTrustsTheSystemRoots) {
  GlobalFlags globals;
  FlagSet set("test", "Tests global flags.");
  AddGlobalFlags(&globals, &set);
  bool help = false;
  ASSERT_TRUE(set.Parse({"--tls"}, &help).ok());
  absl::StatusOr<ClientOptions> options = ClientOptionsFromFlags(globals);
  ASSERT_TRUE(options.ok()) << options.status();
  EXPECT_TRUE(options->tls.enabled);
  EXPECT_TRUE(options->tls.ca_file.empty());
}

TEST(GlobalFlagsTest, ClientCertificateWithoutKeyNamesBothFlags) {
  GlobalFlags globals;
  globals.tls_cert = "client.pem";
  absl::StatusOr<ClientOptions> options = ClientOptionsFromFlags(globals);
  EXPECT_EQ(options.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(options.status().message(), HasSubstr("--tls_key"));
}

}  // namespace
}  // namespace cli
}  // namespace kvpack

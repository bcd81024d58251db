#include "service/exposure.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kvpack {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using ::testing::SizeIs;

TEST(IsLoopbackAddressTest, LoopbackAddressesAndUnixSockets) {
  for (const char* listen :
       {"127.0.0.1:50051", "127.0.0.1:0", "127.1.2.3:50051", "[::1]:50051", "localhost:50051",
        "LOCALHOST:1", "[::ffff:127.0.0.1]:50051", "unix:/run/kvpack.sock",
        "unix-abstract:kvpack", "::1", "127.0.0.1"}) {
    EXPECT_TRUE(IsLoopbackAddress(listen)) << listen;
  }
}

TEST(IsLoopbackAddressTest, EverythingElseIsOnTheNetwork) {
  for (const char* listen :
       {"0.0.0.0:50051", "[::]:50051", ":50051", "10.0.0.7:50051", "128.0.0.1:50051",
        "[::ffff:10.0.0.1]:50051", "[2001:db8::1]:50051", "kvpack.example:50051",
        "localhost.example:50051", "126.255.255.255:1", "", "vsock:3:50051"}) {
    EXPECT_FALSE(IsLoopbackAddress(listen)) << listen;
  }
}

TEST(CheckExposureTest, LoopbackNeedsNoTls) {
  ServerOptions options;  // the default --listen, 127.0.0.1:50051
  EXPECT_TRUE(CheckExposure(options).ok());
  EXPECT_THAT(ExposureWarnings(options), IsEmpty());
}

TEST(CheckExposureTest, RefusesPlaintextOffLoopbackNamingTheFlags) {
  ServerOptions options;
  options.listen = "0.0.0.0:50051";
  const absl::Status status = CheckExposure(options);
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(status.message(),
              AllOf(HasSubstr("0.0.0.0:50051"), HasSubstr("TLS"), HasSubstr("--tls_cert"),
                    HasSubstr("--tls_key"), HasSubstr("--insecure_plaintext_on_network")));
}

TEST(CheckExposureTest, TlsAndAuthenticationOffLoopbackAreAllowed) {
  ServerOptions options;
  options.listen = "[::]:50051";
  options.tls.cert_file = "server.crt";
  options.tls.key_file = "server.key";
  options.auth_tokens = "tokens";
  EXPECT_TRUE(CheckExposure(options).ok());
  EXPECT_THAT(ExposureWarnings(options), IsEmpty());
}

TEST(CheckExposureTest, TlsWithoutAuthenticationOffLoopbackIsRefused) {
  ServerOptions options;
  options.listen = "[::]:50051";
  options.tls.cert_file = "server.crt";
  options.tls.key_file = "server.key";
  const absl::Status status = CheckExposure(options);
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(status.message(),
              AllOf(HasSubstr("authentication"), HasSubstr("--auth_tokens"),
                    HasSubstr("--insecure_no_auth_on_network"), Not(HasSubstr("TLS is off"))));
  options.insecure_no_auth_on_network = true;
  EXPECT_TRUE(CheckExposure(options).ok());
  EXPECT_THAT(ExposureWarnings(options), SizeIs(1));
}

TEST(CheckExposureTest, WaivedPlaintextOffLoopbackStartsWithAWarning) {
  ServerOptions options;
  options.listen = "10.0.0.7:50051";
  options.insecure_plaintext_on_network = true;
  options.auth_tokens = "tokens";
  EXPECT_TRUE(CheckExposure(options).ok());
  const std::vector<std::string> warnings = ExposureWarnings(options);
  ASSERT_THAT(warnings, SizeIs(1));
  EXPECT_THAT(warnings[0], AllOf(HasSubstr("--insecure_plaintext_on_network"),
                                 HasSubstr("10.0.0.7:50051"), HasSubstr("unencrypted")));
}

TEST(CheckExposureTest, TheWaiverIsSilentOnLoopback) {
  ServerOptions options;
  options.insecure_plaintext_on_network = true;
  EXPECT_TRUE(CheckExposure(options).ok());
  EXPECT_THAT(ExposureWarnings(options), IsEmpty());
}

}  // namespace
}  // namespace kvpack

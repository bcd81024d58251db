// turbo_p* through a real server: a put names a calibration by its fingerprint; the server
// codes with it when it has it loaded and says FAILED_PRECONDITION (storing nothing) when it
// does not; gets decode with it, and a stored block whose calibration is missing stays stored.
#include <cmath>
#include <cstdio>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/kvpack_client.h"
#include "codec/calibrate.h"
#include "codec/calibration.h"
#include "gtest/gtest.h"
#include "tests/crash/server_process.h"
#include "tests/testing/block_data.h"
#include "tests/testing/test_server.h"

namespace kvpack {

const char* server_binary = nullptr;

namespace {

BlockLayout Layout() {
  BlockLayout layout;
  layout.layers = 2;
  layout.kv_heads = 2;
  layout.head_dim = 64;
  layout.tokens = 256;
  layout.dtype = DType::kFloat32;
  return layout;
}

// Float32 vectors spread unevenly over the channels (standard deviation 0.9^c), as a model's
// keys and values are over their principal axes.
std::string SpreadBlock(uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal;
  std::vector<float> x(Layout().RawBytes() / 4);
  for (size_t i = 0; i < x.size(); ++i) x[i] = normal(rng) * std::pow(0.9f, i % 64);
  return std::string(reinterpret_cast<const char*>(x.data()), Layout().RawBytes());
}

double Nmse(const std::string& a, const std::string& b) {
  const float* x = reinterpret_cast<const float*>(a.data());
  const float* y = reinterpret_cast<const float*>(b.data());
  double err = 0, norm = 0;
  for (size_t i = 0; i < a.size() / 4; ++i) {
    err += (x[i] - y[i]) * (x[i] - y[i]);
    norm += x[i] * x[i];
  }
  return err / norm;
}

TEST(CalibratedCodecTest, PutsNameTheirCalibrationAndTheServerMustHaveIt) {
  const std::string calibration_block = SpreadBlock(1);
  absl::StatusOr<Calibration> made = Calibrate(
      Layout(), {absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(calibration_block.data()),
                                     calibration_block.size())});
  ASSERT_TRUE(made.ok()) << made.status();
  auto calibration = std::make_shared<const Calibration>(*std::move(made));
  const std::string policy = absl::StrCat("k=turbo_p3,v=turbo_p35,calibration=",
                                          absl::Hex(calibration->fingerprint(), absl::kZeroPad16));

  auto server = TestServer::Start();
  ClientOptions options;
  options.target = server->target();
  auto client = Client::Connect(options);
  ASSERT_TRUE(client.ok()) << client.status();
  const std::string raw = SpreadBlock(2);
  PutOptions put;
  put.codec = policy;
  const std::vector<PutBlock> blocks = {PutBlock{"a", Layout(), Bytes(raw)}};

  // Not loaded yet: refused, with the fingerprint in the message, and nothing stored.
  absl::Status refused = (*client)->Put("ns", blocks, put).status();
  EXPECT_EQ(refused.code(), absl::StatusCode::kFailedPrecondition) << refused;
  EXPECT_NE(refused.message().find(absl::StrCat(absl::Hex(calibration->fingerprint(),
                                                          absl::kZeroPad16))),
            std::string::npos)
      << refused;
  absl::StatusOr<std::vector<GetResult>> missing = (*client)->Get("ns", {"a"});
  EXPECT_TRUE(absl::IsNotFound(missing.status()) || (missing.ok() && !(*missing)[0].found))
      << missing.status();

  // Loaded (as kvpack_server --calibrations does): stored, and read back decoded and encoded.
  RegisterCalibration(calibration);
  ASSERT_TRUE((*client)->Put("ns", blocks, put).ok());
  absl::StatusOr<std::vector<GetResult>> got = (*client)->Get("ns", {"a"});
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_TRUE((*got)[0].found);
  EXPECT_EQ((*got)[0].codec, policy);
  EXPECT_LT(Nmse(raw, (*got)[0].bytes), 0.01);
  absl::StatusOr<std::vector<GetResult>> encoded = (*client)->Get("ns", {"a"}, Want::kEncoded);
  ASSERT_TRUE(encoded.ok()) << encoded.status();
  absl::StatusOr<std::string> local = DecodeLocally((*encoded)[0]);
  ASSERT_TRUE(local.ok()) << local.status();
  EXPECT_EQ(*local, (*got)[0].bytes);
  // Better than the same rates in a random rotation, on blocks it was not calibrated on.
  PutOptions rotated;
  rotated.codec = "k=turbo_e3,v=turbo_e35";
  ASSERT_TRUE((*client)->Put("ns", {PutBlock{"b", Layout(), Bytes(raw)}}, rotated).ok());
  absl::StatusOr<std::vector<GetResult>> other = (*client)->Get("ns", {"b"});
  ASSERT_TRUE(other.ok()) << other.status();
  EXPECT_LT(Nmse(raw, (*got)[0].bytes), 0.7 * Nmse(raw, (*other)[0].bytes));
  // The class-table preset, named as a client names it: stored under its canonical policy and
  // read back decoded, and encoded for the client to decode, to the same bytes.
  const std::string hex = absl::StrCat(absl::Hex(calibration->fingerprint(), absl::kZeroPad16));
  PutOptions preset;
  preset.codec = "pc35v3,calibration=" + hex;
  ASSERT_TRUE((*client)->Put("ns", {PutBlock{"c", Layout(), Bytes(raw)}}, preset).ok());
  absl::StatusOr<std::vector<GetResult>> classes = (*client)->Get("ns", {"c"});
  ASSERT_TRUE(classes.ok()) << classes.status();
  EXPECT_EQ((*classes)[0].codec,
            "k=turbo_pc35,v=turbo_pc3,boundary=1:turbo_pc3,calibration=" + hex);
  EXPECT_LT(Nmse(raw, (*classes)[0].bytes), 0.01);
  absl::StatusOr<std::vector<GetResult>> classes_encoded =
      (*client)->Get("ns", {"c"}, Want::kEncoded);
  ASSERT_TRUE(classes_encoded.ok()) << classes_encoded.status();
  absl::StatusOr<std::string> classes_local = DecodeLocally((*classes_encoded)[0]);
  ASSERT_TRUE(classes_local.ok()) << classes_local.status();
  EXPECT_EQ(*classes_local, (*classes)[0].bytes);
}

// kvpack_server --calibrations: a durable turbo_p block outlives a restart without its
// calibration (gets say FAILED_PRECONDITION and the block stays) and reads again once the
// server loads the file again.
TEST(CalibratedCodecTest, AServerWithoutTheCalibrationKeepsTheBlockAndSaysWhatIsMissing) {
  ASSERT_NE(server_binary, nullptr) << "usage: calibrated_codec_test path/to/kvpack_server";
  const std::string dir = ::testing::TempDir() + "/restart";
  const std::string calibration_block = SpreadBlock(3);
  absl::StatusOr<Calibration> made = Calibrate(
      Layout(), {absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(calibration_block.data()),
                                     calibration_block.size())});
  ASSERT_TRUE(made.ok()) << made.status();
  const std::string file = ::testing::TempDir() + "/model.kvcal";
  {
    const std::string bytes = made->Serialize();
    FILE* f = std::fopen(file.c_str(), "wb");
    ASSERT_NE(f, nullptr);
    ASSERT_EQ(std::fwrite(bytes.data(), 1, bytes.size(), f), bytes.size());
    ASSERT_EQ(std::fclose(f), 0);
  }
  const std::string hex = absl::StrCat(absl::Hex(made->fingerprint(), absl::kZeroPad16));
  auto start = [&](bool with_calibration) {
    std::vector<std::string> flags = {"--metrics_listen=", "--device=cpu",
                                      absl::StrCat("--data_dir=", dir)};
    if (with_calibration) flags.push_back(absl::StrCat("--calibrations=", file));
    return crash::ServerProcess::Start(server_binary, flags, dir + ".log", absl::Seconds(30));
  };
  auto connect = [](const std::string& target) {
    ClientOptions options;
    options.target = target;
    options.max_retries = 0;
    return Client::Connect(options);
  };
  const std::string raw = SpreadBlock(4);
  std::string first_read;
  {
    auto server = start(true);
    ASSERT_TRUE(server.ok()) << server.status();
    auto client = connect((*server)->target());
    ASSERT_TRUE(client.ok()) << client.status();
    PutOptions put;
    put.codec = "turbo_p3,calibration=" + hex;
    put.durable = true;
    ASSERT_TRUE((*client)->Put("ns", {PutBlock{"a", Layout(), Bytes(raw)}}, put).ok());
    absl::StatusOr<std::vector<GetResult>> got = (*client)->Get("ns", {"a"});
    ASSERT_TRUE(got.ok() && (*got)[0].found) << got.status();
    first_read = (*got)[0].bytes;
    EXPECT_LT(Nmse(raw, first_read), 0.02);
    ASSERT_TRUE((*server)->Stop(absl::Seconds(10)).ok());
  }
  for (int pass = 0; pass < 2; ++pass) {  // twice: the failed get must not have dropped it
    auto server = start(false);
    ASSERT_TRUE(server.ok()) << server.status();
    auto client = connect((*server)->target());
    ASSERT_TRUE(client.ok()) << client.status();
    absl::Status status = (*client)->Get("ns", {"a"}).status();
    EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition) << status;
    EXPECT_NE(status.message().find(hex), std::string::npos) << status;
    absl::StatusOr<LookupResult> lookup = (*client)->Lookup("ns", {"a"});
    ASSERT_TRUE(lookup.ok()) << lookup.status();
    ASSERT_TRUE((*server)->Stop(absl::Seconds(10)).ok());
  }
  auto server = start(true);
  ASSERT_TRUE(server.ok()) << server.status();
  auto client = connect((*server)->target());
  ASSERT_TRUE(client.ok()) << client.status();
  absl::StatusOr<std::vector<GetResult>> got = (*client)->Get("ns", {"a"});
  ASSERT_TRUE(got.ok() && (*got)[0].found) << got.status();
  EXPECT_EQ((*got)[0].bytes, first_read);
}

}  // namespace
}  // namespace kvpack

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  if (argc > 1) kvpack::server_binary = argv[1];
  return RUN_ALL_TESTS();
}

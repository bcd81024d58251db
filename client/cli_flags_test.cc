#include "client/cli_flags.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace kvpack {
namespace cli {
namespace {

class FlagSetTest : public ::testing::Test {
 protected:
  FlagSetTest() : flags_("kvpack test", "Tests flags.") {
    flags_.String("key", &key_, "the key");
    flags_.Uint32("layers", &layers_, "layers");
    flags_.Uint64("blocks", &blocks_, "blocks");
    flags_.Double("ratio", &ratio_, "ratio");
    flags_.Bool("durable", &durable_, "durable");
  }

  absl::Status Parse(std::vector<std::string> args) { return flags_.Parse(args, &help_); }

  std::string key_;
  uint32_t layers_ = 32;
  uint64_t blocks_ = 256;
  double ratio_ = 1.5;
  bool durable_ = false;
  bool help_ = false;
  FlagSet flags_;
};

TEST_F(FlagSetTest, ParsesEverySpelling) {
  ASSERT_TRUE(Parse({"--key=ab", "--layers", "4", "-blocks=9", "--ratio=0.25", "--durable"}).ok());
  EXPECT_EQ(key_, "ab");
  EXPECT_EQ(layers_, 4u);
  EXPECT_EQ(blocks_, 9u);
  EXPECT_EQ(ratio_, 0.25);
  EXPECT_TRUE(durable_);
  ASSERT_TRUE(Parse({"--nodurable"}).ok());
  EXPECT_FALSE(durable_);
  ASSERT_TRUE(Parse({"--durable=true"}).ok());
  EXPECT_TRUE(durable_);
  EXPECT_FALSE(help_);
}

TEST_F(FlagSetTest, RejectsUnknownMalformedAndPositional) {
  EXPECT_EQ(Parse({"--nosuch=1"}).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Parse({"--layers=-1"}).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Parse({"--layers=4294967296"}).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Parse({"--blocks=many"}).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Parse({"--durable=maybe"}).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Parse({"--key"}).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Parse({"stray"}).code(), absl::StatusCode::kInvalidArgument);
  const absl::Status status = Parse({"--layers=x"});
  EXPECT_NE(status.message().find("--layers=x"), absl::string_view::npos) << status;
}

TEST_F(FlagSetTest, HelpStopsParsing) {
  ASSERT_TRUE(Parse({"--layers=2", "--help", "--nosuch"}).ok());
  EXPECT_TRUE(help_);
}

TEST_F(FlagSetTest, PrefixStopsAtSubcommand) {
  std::vector<std::string> rest;
  const std::vector<std::string> args = {"--key=k", "put", "--layers=3"};
  ASSERT_TRUE(flags_.ParsePrefix(args, &help_, &rest).ok());
  EXPECT_EQ(key_, "k");
  EXPECT_EQ(rest, (std::vector<std::string>{"put", "--layers=3"}));
  EXPECT_EQ(layers_, 32u);
}

TEST_F(FlagSetTest, UsageListsEveryFlagWithDefault) {
  const std::string usage = flags_.Usage();
  for (const char* expected : {"usage: kvpack test", "Tests flags.", "--key", "--layers (default 32)",
                               "--blocks (default 256)", "--ratio (default 1.5)",
                               "--durable (default false)"}) {
    EXPECT_NE(usage.find(expected), std::string::npos) << expected << "\n" << usage;
  }
}

}  // namespace
}  // namespace cli
}  // namespace kvpack

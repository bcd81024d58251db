#include "tests/crash/key_model.h"

#include <optional>

#include "gtest/gtest.h"
#include "tests/crash/block_content.h"

namespace kvpack {
namespace crash {
namespace {

KeyOp Put(uint64_t version, bool durable) {
  KeyOp op;
  op.type = KeyOp::Type::kPut;
  op.durable = durable;
  op.version = version;
  return op;
}

KeyOp Delete() {
  KeyOp op;
  op.type = KeyOp::Type::kDelete;
  return op;
}

void Acked(KeyModel& model, const KeyOp& op, Tier tier) {
  model.Send(op);
  model.Acknowledge(tier);
}

TEST(KeyModelTest, NeverWrittenKeyMustStayAbsent) {
  KeyModel model;
  EXPECT_TRUE(model.AfterCrash().Allows(std::nullopt));
  EXPECT_FALSE(model.AfterCrash().Allows(1));
}

TEST(KeyModelTest, DurablePutMustSurviveExactly) {
  KeyModel model;
  Acked(model, Put(1, true), Tier::kDisk);
  EXPECT_TRUE(model.AfterCrash().Allows(1));
  EXPECT_FALSE(model.AfterCrash().Allows(std::nullopt));
}

TEST(KeyModelTest, NonDurablePutAckedOnDiskMustSurviveExactly) {
  KeyModel model;
  Acked(model, Put(1, false), Tier::kDisk);
  EXPECT_TRUE(model.AfterCrash().Allows(1));
  EXPECT_FALSE(model.AfterCrash().Allows(std::nullopt));
}

TEST(KeyModelTest, NonDurablePutAckedInRamMayBeLostButNeverReverts) {
  KeyModel model;
  Acked(model, Put(1, true), Tier::kDisk);
  Acked(model, Put(2, false), Tier::kRam);
  const Expectation expected = model.AfterCrash();
  EXPECT_TRUE(expected.Allows(2));
  EXPECT_TRUE(expected.Allows(std::nullopt));
  EXPECT_FALSE(expected.Allows(1));  // the overwritten durable version
  EXPECT_EQ(expected.ToString(), "{v2, not found}");
}

TEST(KeyModelTest, DeleteMustStayDeleted) {
  KeyModel model;
  Acked(model, Put(1, true), Tier::kDisk);
  Acked(model, Delete(), Tier::kUnspecified);
  EXPECT_TRUE(model.AfterCrash().Allows(std::nullopt));
  EXPECT_FALSE(model.AfterCrash().Allows(1));
}

TEST(KeyModelTest, InFlightPutAllowsItsBytesOrNotFound) {
  KeyModel model;
  Acked(model, Put(1, true), Tier::kDisk);
  model.Send(Put(2, false));
  EXPECT_TRUE(model.in_flight());
  const Expectation expected = model.AfterCrash();
  EXPECT_TRUE(expected.Allows(1));
  EXPECT_TRUE(expected.Allows(2));
  EXPECT_TRUE(expected.Allows(std::nullopt));
  EXPECT_FALSE(expected.Allows(3));
}

TEST(KeyModelTest, InFlightDeleteAllowsNotFound) {
  KeyModel model;
  Acked(model, Put(1, true), Tier::kDisk);
  model.Send(Delete());
  EXPECT_TRUE(model.AfterCrash().Allows(1));
  EXPECT_TRUE(model.AfterCrash().Allows(std::nullopt));
}

TEST(KeyModelTest, LiveGetsAreExact) {
  KeyModel model;
  Acked(model, Put(1, false), Tier::kRam);
  EXPECT_TRUE(model.Live().Allows(1));
  EXPECT_FALSE(model.Live().Allows(std::nullopt));
}

TEST(KeyModelTest, SettledStateIsDurableUntilTheNextOperation) {
  KeyModel model;
  Acked(model, Put(1, false), Tier::kRam);
  model.Send(Put(2, false));
  model.Settle(2);
  EXPECT_FALSE(model.in_flight());
  EXPECT_TRUE(model.AfterCrash().Allows(2));
  EXPECT_FALSE(model.AfterCrash().Allows(std::nullopt));
  model.Settle(std::nullopt);
  EXPECT_FALSE(model.AfterCrash().Allows(2));
}

TEST(BlockContentTest, IdentifiesIntactForeignAndCorruptBytes) {
  BlockContentOptions options;
  options.large_percent = 50;
  options.large_min_tokens = 1040;
  options.large_max_tokens = 1100;
  const BlockContent content(options);
  for (uint64_t version = 1; version <= 20; ++version) {
    const std::string bytes = content.Bytes(7, version);
    ASSERT_EQ(bytes.size(), content.Layout(7, version).RawBytes());
    const Identified id = content.Identify(bytes);
    EXPECT_EQ(id.kind, Identified::Kind::kBlock);
    EXPECT_EQ(id.key_index, 7u);
    EXPECT_EQ(id.version, version);
  }
  std::string damaged = content.Bytes(3, 4);
  damaged[damaged.size() / 2] ^= 1;
  EXPECT_EQ(content.Identify(damaged).kind, Identified::Kind::kCorrupt);
  EXPECT_EQ(content.Identify(std::string(4096, 'x')).kind, Identified::Kind::kUnknown);
  EXPECT_EQ(KeyName(7), "k0007");
}

TEST(BlockContentTest, SizesStayInTheirRanges) {
  BlockContentOptions options;
  options.large_percent = 10;
  options.large_min_tokens = 1040;
  options.large_max_tokens = 1280;
  const BlockContent content(options);
  int large = 0;
  for (uint64_t version = 1; version <= 1000; ++version) {
    const uint32_t tokens = content.Layout(1, version).tokens;
    if (tokens >= 1040) {
      EXPECT_LE(tokens, 1280u);
      ++large;
    } else {
      EXPECT_GE(tokens, 16u);
      EXPECT_LE(tokens, 128u);
    }
  }
  EXPECT_GT(large, 50);
  EXPECT_LT(large, 150);
}

}  // namespace
}  // namespace crash
}  // namespace kvpack

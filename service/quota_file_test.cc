#include "service/quota_file.h"

#include "gtest/gtest.h"

namespace kvpack {
namespace {

TEST(QuotaFileTest, ParsesNamespacesDefaultCommentsAndUnlimited) {
  absl::StatusOr<NamespaceQuotas> quotas = ParseQuotaFile(
      "# namespace ram disk\n"
      "default 1GiB 16GiB\n"
      "\n"
      "tenant-a\t4GiB   64GiB  # big tenant\n"
      "tenant-b 256MiB unlimited\n",
      "q.txt");
  ASSERT_TRUE(quotas.ok()) << quotas.status();
  EXPECT_EQ(quotas->origin, "--quotas");
  EXPECT_EQ(quotas->For("tenant-a").ram_bytes, 4ull << 30);
  EXPECT_EQ(quotas->For("tenant-a").disk_bytes, 64ull << 30);
  EXPECT_EQ(quotas->For("tenant-b").ram_bytes, 256ull << 20);
  EXPECT_EQ(quotas->For("tenant-b").disk_bytes, kNoQuota);
  EXPECT_EQ(quotas->For("someone").ram_bytes, 1ull << 30);
  EXPECT_EQ(quotas->For("someone").disk_bytes, 16ull << 30);
}

TEST(QuotaFileTest, AnOptionalFourthColumnIsThePutRate) {
  absl::StatusOr<NamespaceQuotas> quotas = ParseQuotaFile(
      "default 1GiB 1GiB 64MiB/s\n"
      "a 1GiB 1GiB unlimited\n"
      "b 1GiB 1GiB\n",
      "q.txt");
  ASSERT_TRUE(quotas.ok()) << quotas.status();
  EXPECT_EQ(quotas->For("someone").put_bytes_per_second, 64ull << 20);
  EXPECT_EQ(quotas->For("a").put_bytes_per_second, kNoQuota);
  EXPECT_EQ(quotas->For("b").put_bytes_per_second, kNoQuota);
  for (const char* bad : {"a 1GiB 1GiB 64MiB\n", "a 1GiB 1GiB 0/s\n", "a 1GiB 1GiB fast/s\n",
                          "a 1GiB 1GiB 1MiB/s extra\n"}) {
    absl::StatusOr<NamespaceQuotas> refused = ParseQuotaFile(bad, "q.txt");
    EXPECT_TRUE(absl::IsInvalidArgument(refused.status())) << bad << ": " << refused.status();
    EXPECT_EQ(refused.status().message().rfind("--quotas q.txt line 1: ", 0), 0u)
        << refused.status();
  }
}

TEST(QuotaFileTest, WithoutADefaultOtherNamespacesAreUnlimited) {
  absl::StatusOr<NamespaceQuotas> quotas = ParseQuotaFile("a 1MiB 2MiB\n", "q.txt");
  ASSERT_TRUE(quotas.ok());
  EXPECT_EQ(quotas->For("b").ram_bytes, kNoQuota);
  EXPECT_EQ(quotas->For("b").disk_bytes, kNoQuota);
}

TEST(QuotaFileTest, MalformedLinesAreErrorsNamingTheLine) {
  struct Case {
    const char* text;
    const char* message;
  } cases[] = {
      {"a 1GiB 2GiB\nb 1GiB\n",
       "--quotas q.txt line 2: want 'NAMESPACE RAM_BYTES DISK_BYTES [PUT_BYTES/s]'"},
      {"\n\na lots 2GiB\n", "--quotas q.txt line 3: RAM quota: "},
      {"a 1GiB -1\n", "--quotas q.txt line 1: disk quota: "},
      {"a 1GiB 1GiB\na 2GiB 2GiB\n", "--quotas q.txt line 2: namespace 'a' has a line already"},
      {"default 1GiB 1GiB\ndefault 2GiB 2GiB\n", "--quotas q.txt line 2: a second 'default'"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<NamespaceQuotas> quotas = ParseQuotaFile(c.text, "q.txt");
    ASSERT_FALSE(quotas.ok()) << c.text;
    EXPECT_TRUE(absl::IsInvalidArgument(quotas.status()));
    EXPECT_EQ(quotas.status().message().rfind(c.message, 0), 0u) << quotas.status();
  }
}

}  // namespace
}  // namespace kvpack

#include "service/config_file.h"

#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

ABSL_FLAG(std::string, test_listen, "127.0.0.1:1", "");
ABSL_FLAG(int, test_threads, 0, "");
ABSL_FLAG(bool, test_insecure, false, "");
ABSL_FLAG(absl::Duration, test_timeout, absl::Seconds(1), "");

namespace kvpack {
namespace {

using ::testing::HasSubstr;

TEST(ConfigFileTest, ParsesKeysValuesAndLines) {
  absl::StatusOr<std::vector<ConfigEntry>> entries =
      ParseConfigText("# comment\nlisten: 0.0.0.0:50051\n\nram_capacity: 8GiB\nquotas:\n", "f");
  ASSERT_TRUE(entries.ok()) << entries.status();
  ASSERT_EQ(entries->size(), 3u);
  EXPECT_EQ((*entries)[0].key, "listen");
  EXPECT_EQ((*entries)[0].value, "0.0.0.0:50051");
  EXPECT_EQ((*entries)[0].line, 2);
  EXPECT_EQ((*entries)[1].value, "8GiB");
  EXPECT_EQ((*entries)[1].line, 4);
  EXPECT_EQ((*entries)[2].value, "");
}

TEST(ConfigFileTest, EmptyDocumentHasNoEntries) {
  absl::StatusOr<std::vector<ConfigEntry>> entries = ParseConfigText("# nothing\n", "f");
  ASSERT_TRUE(entries.ok());
  EXPECT_TRUE(entries->empty());
}

TEST(ConfigFileTest, RejectsMalformedFilesNamingTheLine) {
  struct Case {
    const char* text;
    const char* message;
  } cases[] = {
      {"a: 1\nb: [1, 2]\n", "f:2: b: expected a single value, not a list"},
      {"a: 1\nb:\n  c: 2\n", "f:2: b: expected a single value, not a mapping"},
      {"- a\n- b\n", "f:1: expected a mapping"},
      {"a: 1\na: 2\n", "f:2: a is given twice"},
      {"a: 1\nb: c: d\n", "f:2: not YAML"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<std::vector<ConfigEntry>> entries = ParseConfigText(c.text, "f");
    ASSERT_FALSE(entries.ok()) << c.text;
    EXPECT_EQ(entries.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(entries.status().message(), HasSubstr(c.message)) << c.text;
  }
}

TEST(ConfigFileTest, SetsFlagsOfEveryType) {
  absl::StatusOr<std::vector<ConfigEntry>> entries = ParseConfigText(
      "test_listen: 0.0.0.0:9\ntest_threads: 7\ntest_insecure: true\ntest_timeout: 45s\n", "f");
  ASSERT_TRUE(entries.ok());
  ASSERT_TRUE(ApplyConfigToFlags(*entries, "f").ok());
  EXPECT_EQ(absl::GetFlag(FLAGS_test_listen), "0.0.0.0:9");
  EXPECT_EQ(absl::GetFlag(FLAGS_test_threads), 7);
  EXPECT_TRUE(absl::GetFlag(FLAGS_test_insecure));
  EXPECT_EQ(absl::GetFlag(FLAGS_test_timeout), absl::Seconds(45));
}

TEST(ConfigFileTest, RejectsUnknownKeysAndBadValues) {
  struct Case {
    const char* text;
    const char* message;
  } cases[] = {
      {"test_threads: 1\nno_such_flag: 1\n", "f:2: unknown key 'no_such_flag'"},
      {"flagfile: /etc/passwd\n", "f:1: unknown key 'flagfile'"},
      {"config: other.yaml\n", "f:1: unknown key 'config'"},
      {"test_threads: many\n", "f:1: test_threads: 'many'"},
      {"test_timeout: soon\n", "f:1: test_timeout: 'soon'"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<std::vector<ConfigEntry>> entries = ParseConfigText(c.text, "f");
    ASSERT_TRUE(entries.ok()) << c.text;
    absl::Status status = ApplyConfigToFlags(*entries, "f");
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << c.text;
    EXPECT_THAT(status.message(), HasSubstr(c.message)) << c.text;
  }
}

TEST(ConfigFileTest, MissingFileIsNotFound) {
  absl::StatusOr<std::vector<ConfigEntry>> entries = ReadConfigFile("/nonexistent/kvpack.yaml");
  EXPECT_EQ(entries.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(entries.status().message(), HasSubstr("/nonexistent/kvpack.yaml"));
}

TEST(ConfigFileTest, FindsTheConfigArgumentInEitherForm) {
  const char* equals[] = {"server", "--listen=x", "--config=/a.yaml"};
  EXPECT_EQ(FindConfigArgument(3, const_cast<char**>(equals)), "/a.yaml");
  const char* spaced[] = {"server", "--config", "/b.yaml", "--listen=x"};
  EXPECT_EQ(FindConfigArgument(4, const_cast<char**>(spaced)), "/b.yaml");
  const char* none[] = {"server", "--listen=x", "--", "--config=/c.yaml"};
  EXPECT_EQ(FindConfigArgument(4, const_cast<char**>(none)), "");
}

}  // namespace
}  // namespace kvpack

// FUZZ_CHECK: the assertion the fuzz targets state their invariants with. A failed check
// prints what broke and aborts, which libFuzzer reports as a crash (and saves the input) and
// which fails the corpus replay test. Active in every build mode; no dependencies beyond the
// standard library, so the targets also build with gcc for the replay tests.
#ifndef KVPACK_TESTS_FUZZ_FUZZ_CHECK_H_
#define KVPACK_TESTS_FUZZ_FUZZ_CHECK_H_

#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>

namespace kvpack {
namespace fuzz {

// Collects the message streamed after a failed check; its destructor reports and aborts.
class CheckFailure {
 public:
  CheckFailure(const char* file, int line, const char* condition) {
    stream_ << file << ":" << line << ": invariant failed: " << condition << ": ";
  }
  CheckFailure(const CheckFailure&) = delete;
  CheckFailure& operator=(const CheckFailure&) = delete;
  ~CheckFailure() {
    const std::string message = stream_.str();
    std::fprintf(stderr, "%s\n", message.c_str());
    std::fflush(stderr);
    std::abort();
  }
  std::ostream& stream() { return stream_; }

 private:
  std::ostringstream stream_;
};

}  // namespace fuzz
}  // namespace kvpack

// FUZZ_CHECK(cond) << "context";
#define FUZZ_CHECK(condition)  \
  if (condition) {             \
  } else                       \
    ::kvpack::fuzz::CheckFailure(__FILE__, __LINE__, #condition).stream()

#endif  // KVPACK_TESTS_FUZZ_FUZZ_CHECK_H_

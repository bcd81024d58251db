#include "tests/crash/server_process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace kvpack {
namespace crash {
namespace {

constexpr char kServingLine[] = "serving on port ";
constexpr size_t kServingLineBytes = sizeof(kServingLine) - 1;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

std::string DescribeExit(int wait_status) {
  if (WIFEXITED(wait_status)) return absl::StrCat("exited with ", WEXITSTATUS(wait_status));
  if (WIFSIGNALED(wait_status)) return absl::StrCat("died of signal ", WTERMSIG(wait_status));
  return absl::StrCat("ended with wait status ", wait_status);
}

// The port from the server's "serving on port N" line; 0 until it appears.
int ServingPort(const std::string& log) {
  const size_t at = log.find(kServingLine);
  if (at == std::string::npos) return 0;
  const size_t digits = at + kServingLineBytes;
  size_t end = digits;
  while (end < log.size() && log[end] >= '0' && log[end] <= '9') ++end;
  int port = 0;
  if (!absl::SimpleAtoi(absl::string_view(log).substr(digits, end - digits), &port)) return 0;
  return port;
}

}  // namespace

absl::StatusOr<std::unique_ptr<ServerProcess>> ServerProcess::Start(
    const std::string& binary, const std::vector<std::string>& flags, const std::string& log_path,
    absl::Duration timeout) {
  // Everything the child needs is prepared before fork(): after it, in a process with threads,
  // the child may only make async-signal-safe calls until exec.
  std::vector<std::string> args = {binary, "--listen=127.0.0.1:0"};
  args.insert(args.end(), flags.begin(), flags.end());
  std::vector<char*> argv;
  for (std::string& arg : args) argv.push_back(arg.data());
  argv.push_back(nullptr);
  const int log_fd = open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (log_fd < 0) {
    return absl::InternalError(absl::StrCat("cannot create ", log_path, ": ", strerror(errno)));
  }
  const int null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  const pid_t parent = getpid();

  const pid_t pid = fork();
  if (pid < 0) {
    const int error = errno;
    close(log_fd);
    if (null_fd >= 0) close(null_fd);
    return absl::InternalError(absl::StrCat("fork: ", strerror(error)));
  }
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(126);  // the driver died before prctl took effect
    if (null_fd >= 0) dup2(null_fd, STDIN_FILENO);
    dup2(log_fd, STDOUT_FILENO);
    dup2(log_fd, STDERR_FILENO);
    execv(argv[0], argv.data());
    _exit(127);
  }
  close(log_fd);
  if (null_fd >= 0) close(null_fd);

  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    int wait_status = 0;
    if (waitpid(pid, &wait_status, WNOHANG) == pid) {
      return absl::UnavailableError(absl::StrCat(
          "kvpack_server ", DescribeExit(wait_status), " before serving (", absl::StrJoin(args, " "),
          "); the end of ", log_path, ":\n", LogTail(log_path, 10)));
    }
    const int port = ServingPort(ReadFile(log_path));
    if (port != 0) return std::unique_ptr<ServerProcess>(new ServerProcess(pid, port));
    if (absl::Now() > deadline) {
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
      return absl::UnavailableError(absl::StrCat(
          "kvpack_server was not serving after ", absl::FormatDuration(timeout), " (",
          absl::StrJoin(args, " "), "); the end of ", log_path, ":\n", LogTail(log_path, 10)));
    }
    absl::SleepFor(absl::Milliseconds(5));
  }
}

ServerProcess::~ServerProcess() {
  if (pid_ != 0) Kill();
}

std::string ServerProcess::target() const { return absl::StrCat("127.0.0.1:", port_); }

void ServerProcess::Kill() {
  if (pid_ == 0) return;
  kill(pid_, SIGKILL);
  while (waitpid(pid_, nullptr, 0) < 0 && errno == EINTR) {
  }
  pid_ = 0;
}

absl::Status ServerProcess::Stop(absl::Duration grace) {
  if (pid_ == 0) return absl::OkStatus();
  kill(pid_, SIGTERM);
  const absl::Time deadline = absl::Now() + grace;
  while (absl::Now() < deadline) {
    int wait_status = 0;
    if (waitpid(pid_, &wait_status, WNOHANG) == pid_) {
      pid_ = 0;
      if (WIFEXITED(wait_status) && WEXITSTATUS(wait_status) == 0) return absl::OkStatus();
      return absl::InternalError(absl::StrCat("kvpack_server ", DescribeExit(wait_status),
                                              " on SIGTERM"));
    }
    absl::SleepFor(absl::Milliseconds(10));
  }
  Kill();
  return absl::DeadlineExceededError(
      absl::StrCat("kvpack_server did not exit within ", absl::FormatDuration(grace),
                   " of SIGTERM; killed"));
}

std::string LogTail(const std::string& path, int lines) {
  std::vector<std::string> all = absl::StrSplit(ReadFile(path), '\n', absl::SkipEmpty());
  const size_t first = all.size() > static_cast<size_t>(lines) ? all.size() - lines : 0;
  std::string tail;
  for (size_t i = first; i < all.size(); ++i) absl::StrAppend(&tail, "  | ", all[i], "\n");
  return tail.empty() ? "  (empty)\n" : tail;
}

}  // namespace crash
}  // namespace kvpack

// ServerProcess: the real kvpack_server binary as a child process, for tests that must kill it
// the hard way. It is started with the caller's flags plus --listen=127.0.0.1:0 (the kernel
// picks a free port, read back from the server's "serving on port N" line, so parallel tests
// never race for a port); its stdout and stderr go to a log file. The child gets SIGKILL if
// the thread that started it exits, so a dying driver leaves no server behind.
//
// Not thread-safe: one thread starts and stops it.
#ifndef KVPACK_TESTS_CRASH_SERVER_PROCESS_H_
#define KVPACK_TESTS_CRASH_SERVER_PROCESS_H_

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace kvpack {
namespace crash {

class ServerProcess {
 public:
  // Starts `binary` with `flags` (each "--name=value") and waits until it says it is serving.
  // Unavailable (with the log's last lines) if it exits first or is not serving within
  // `timeout`; Internal if it cannot be started at all.
  static absl::StatusOr<std::unique_ptr<ServerProcess>> Start(const std::string& binary,
                                                              const std::vector<std::string>& flags,
                                                              const std::string& log_path,
                                                              absl::Duration timeout);

  // SIGKILL if still running.
  ~ServerProcess();
  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;

  // "127.0.0.1:PORT"
  std::string target() const;
  // The child's process id (0 once reaped), e.g. to read /proc/PID/status.
  pid_t pid() const { return pid_; }

  // SIGKILL, then reaps the process: when it returns, every file the server held is closed.
  void Kill();

  // SIGTERM; SIGKILL if it has not exited within `grace`. OK if it exited 0 on its own.
  absl::Status Stop(absl::Duration grace);

 private:
  ServerProcess(pid_t pid, int port) : pid_(pid), port_(port) {}

  pid_t pid_;  // 0 once reaped
  const int port_;
};

// The last `lines` lines of a text file (for reports).
std::string LogTail(const std::string& path, int lines);

}  // namespace crash
}  // namespace kvpack

#endif  // KVPACK_TESTS_CRASH_SERVER_PROCESS_H_

// Early-return helpers for absl::Status / absl::StatusOr, which Debian's Abseil (20220623)
// does not ship.
//
//   RETURN_IF_ERROR(DoThing());                 // returns the status if not OK
//   ASSIGN_OR_RETURN(auto value, MakeThing());  // returns the status, or binds the value
#ifndef KVPACK_COMMON_STATUS_MACROS_H_
#define KVPACK_COMMON_STATUS_MACROS_H_

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define KVPACK_STATUS_CONCAT_INNER_(a, b) a##b
#define KVPACK_STATUS_CONCAT_(a, b) KVPACK_STATUS_CONCAT_INNER_(a, b)

#define RETURN_IF_ERROR(expr)                                   \
  do {                                                          \
    ::absl::Status kvpack_status_ = (expr);                     \
    if (!kvpack_status_.ok()) return kvpack_status_;            \
  } while (0)

#define ASSIGN_OR_RETURN(lhs, rexpr) \
  KVPACK_ASSIGN_OR_RETURN_IMPL_(KVPACK_STATUS_CONCAT_(kvpack_statusor_, __LINE__), lhs, rexpr)

#define KVPACK_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, rexpr) \
  auto statusor = (rexpr);                                  \
  if (!statusor.ok()) return std::move(statusor).status();  \
  lhs = std::move(statusor).value()

#endif  // KVPACK_COMMON_STATUS_MACROS_H_

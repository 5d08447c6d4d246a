// RETURN_IF_ERROR / ASSIGN_OR_RETURN: Abseil 20220623 ships neither.
#ifndef IDSYNC_CONNECTOR_STATUS_MACROS_H_
#define IDSYNC_CONNECTOR_STATUS_MACROS_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define IDSYNC_RETURN_IF_ERROR(expr)                 \
  do {                                               \
    ::absl::Status idsync_status_ = (expr);          \
    if (!idsync_status_.ok()) return idsync_status_; \
  } while (0)

#define IDSYNC_CONCAT_INNER_(a, b) a##b
#define IDSYNC_CONCAT_(a, b) IDSYNC_CONCAT_INNER_(a, b)

#define IDSYNC_ASSIGN_OR_RETURN(lhs, rexpr)                                 \
  IDSYNC_ASSIGN_OR_RETURN_IMPL_(IDSYNC_CONCAT_(idsync_statusor_, __LINE__), \
                                lhs, rexpr)

#define IDSYNC_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, rexpr) \
  auto statusor = (rexpr);                                  \
  if (!statusor.ok()) return std::move(statusor).status();  \
  lhs = std::move(statusor).value()

#endif  // IDSYNC_CONNECTOR_STATUS_MACROS_H_

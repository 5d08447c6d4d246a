// CrashPoint: a test-only hook that kills this process at a named point, so
// crash tests (tests/reliability/) can stop the dispatcher at an exact place
// in a sync instead of after a guessed delay.
//
// When the environment variable IDSYNC_CRASH_AT is "NAME:N" (N >= 1), the
// N-th call of CrashPoint("NAME") in this process raises SIGKILL (after one
// line on stderr). The variable is read once, at the first call. Unset, the
// hook is a single cached check and does nothing; a malformed value is
// reported on stderr once and ignored. Thread-safe: calls from several
// threads are counted together.
//
// Points in dispatcher/sync_engine.cc:
//   before_commit     a group (records, phase change or deletion batch) is
//                     about to commit with its checkpoint;
//   after_commit      such a commit has just succeeded;
//   deletion_pass     one unseen record was marked deleted, not yet committed;
//   deletion_commit   a batch of deletions has just committed;
//   after_run_finish  the run's final state (FinishRun) has just committed.
#ifndef IDSYNC_DISPATCHER_CRASH_POINT_H_
#define IDSYNC_DISPATCHER_CRASH_POINT_H_

#include "absl/strings/string_view.h"

namespace idsync {

void CrashPoint(absl::string_view name);

}  // namespace idsync

#endif  // IDSYNC_DISPATCHER_CRASH_POINT_H_

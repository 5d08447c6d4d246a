// The agent token on disk: one line, readable by its owner only (0600).
// Written atomically (a 0600 temporary file created with O_EXCL, fsync'd,
// then renamed into place) so a crash never leaves a partial or
// world-readable token behind. The token itself never appears in an error.
// Thread-compatible (plain functions).
#ifndef IDSYNC_AGENTS_TOKEN_FILE_H_
#define IDSYNC_AGENTS_TOKEN_FILE_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace idsync {

// $IDSYNC_AGENT_TOKEN_FILE, else $HOME/.config/idsync/agent.token.
// kFailedPrecondition when neither is set.
absl::StatusOr<std::string> DefaultTokenFile();

// Makes sure a token can be written to `path`, before a one-time
// registration token is spent: creates missing parent directories (0700);
// kAlreadyExists if a file is there and !overwrite; kPermissionDenied if
// the directory is not writable.
absl::Status PrepareTokenFile(const std::string& path, bool overwrite);

// Writes `token` to `path` with mode 0600, creating missing parent
// directories with mode 0700. kAlreadyExists if `path` exists and
// !overwrite (checked atomically with the rename).
absl::Status WriteTokenFile(const std::string& path, absl::string_view token,
                            bool overwrite);

// Reads the token. Errors: kNotFound when there is no file,
// kPermissionDenied when it is not a regular file owned by this user with
// mode 0600 (or stricter), kInvalidArgument when it is empty or holds
// characters a token cannot have.
absl::StatusOr<std::string> ReadTokenFile(const std::string& path);

// True for characters an agent token may hold (printable ASCII, no space):
// it travels in an HTTP/2 header.
bool IsValidTokenText(absl::string_view token);

}  // namespace idsync

#endif  // IDSYNC_AGENTS_TOKEN_FILE_H_

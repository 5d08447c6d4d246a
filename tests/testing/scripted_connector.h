// ScriptedConnector: a real Connector whose source is a list of chunks held
// in memory, for engine tests. Resume tokens are chunk indexes; it can fail
// after a given number of chunks and report a next sync token.
#ifndef IDSYNC_TESTS_TESTING_SCRIPTED_CONNECTOR_H_
#define IDSYNC_TESTS_TESTING_SCRIPTED_CONNECTOR_H_

#include <functional>
#include <string>
#include <vector>

#include "connector/connector.h"

namespace idsync::testing {

// Identities "P<i>" for i in [first, last), with the given department.
std::vector<idsync::v1::RemoteIdentity> People(
    int first, int last, const std::string& department = "Sales");

// Splits records into chunks of `size`.
std::vector<idsync::v1::SyncChunk> Chunked(
    const std::vector<idsync::v1::RemoteIdentity>& people, int size);

class ScriptedConnector final : public Connector {
 public:
  explicit ScriptedConnector(std::vector<idsync::v1::SyncChunk> chunks)
      : chunks_(std::move(chunks)) {}

  // After sending this many chunks (counted from the resume point), Sync
  // returns `status` instead of continuing.
  void FailAfter(int chunks, absl::Status status) {
    fail_after_ = chunks;
    fail_status_ = std::move(status);
  }
  void set_next_sync_token(std::string token) {
    next_token_ = std::move(token);
  }
  // Called before each chunk is written, with its index.
  void set_before_chunk(std::function<void(int)> hook) {
    hook_ = std::move(hook);
  }

  const idsync::v1::SyncRequest& last_request() const { return last_request_; }
  int syncs() const { return syncs_; }

  absl::StatusOr<idsync::v1::ConnectorInfo> Describe() override;
  absl::Status TestConnection() override { return absl::OkStatus(); }
  absl::Status Sync(const idsync::v1::SyncRequest& request,
                    RecordSink& sink) override;

 private:
  std::vector<idsync::v1::SyncChunk> chunks_;
  int fail_after_ = -1;
  absl::Status fail_status_;
  std::string next_token_;
  std::function<void(int)> hook_;
  idsync::v1::SyncRequest last_request_;
  int syncs_ = 0;
};

}  // namespace idsync::testing

#endif  // IDSYNC_TESTS_TESTING_SCRIPTED_CONNECTOR_H_

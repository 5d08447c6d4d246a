// The connector SDK: what every connector type implements and how it hands
// records to the dispatcher.
//
// A connector reads a source and writes SyncChunks into a RecordSink. The
// chunk is the unit everywhere (hosted, agent, remote process), so a resume
// token always marks a chunk boundary. A Connector instance is used by one
// run at a time; it need not be thread-safe.
#ifndef IDSYNC_CONNECTOR_CONNECTOR_H_
#define IDSYNC_CONNECTOR_CONNECTOR_H_

#include <initializer_list>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "idsync/v1/connector.pb.h"

namespace idsync {

inline constexpr int kDefaultChunkSize = 1000;
inline constexpr int kMaxChunkSize = 10000;

// Receives a run's output. Write may block until the consumer has room
// (backpressure), so a connector never gets ahead of the store by more than a
// bounded number of chunks. A non-OK status means "stop": the connector must
// return promptly, passing that status up.
class RecordSink {
 public:
  virtual ~RecordSink() = default;
  virtual absl::Status Write(idsync::v1::SyncChunk chunk) = 0;
  // The watermark a later incremental run should start from. The dispatcher
  // stores it only if the run succeeds.
  virtual void SetNextSyncToken(std::string token) = 0;
  // Moves into `*chunk` a chunk the sink is done with, so the next one can
  // reuse its allocations (cleared protobuf elements and strings keep
  // theirs). False when none is ready; `*chunk` must be empty.
  virtual bool TakeSpent(idsync::v1::SyncChunk* chunk) { return false; }
};

class Connector {
 public:
  virtual ~Connector() = default;

  // Type, version and capabilities ("full", "incremental", "resume", ...).
  virtual absl::StatusOr<idsync::v1::ConnectorInfo> Describe() = 0;

  // Checks the source is reachable and the credentials work. Reads nothing.
  virtual absl::Status TestConnection() = 0;

  // Streams the source into `sink` in chunks of request.chunk_size() records
  // (kDefaultChunkSize when 0). Starts after request.resume_token() when it is
  // set and still valid. Errors: kInvalidArgument for bad input the operator
  // must fix, kUnavailable for transient source failures, kUnauthenticated
  // for rejected credentials, or whatever the sink returned.
  virtual absl::Status Sync(const idsync::v1::SyncRequest& request,
                            RecordSink& sink) = 0;
};

// What Describe() returns for a built-in connector: `type`, version "1".
inline idsync::v1::ConnectorInfo BuiltinInfo(
    absl::string_view type,
    std::initializer_list<absl::string_view> capabilities) {
  idsync::v1::ConnectorInfo info;
  info.set_type(std::string(type));
  info.set_version("1");
  for (absl::string_view c : capabilities) {
    info.add_capabilities(std::string(c));
  }
  return info;
}

// The secrets a run uses: the request's auth_config (the dispatcher's
// sealed copy) when it has any, else those the connector was created with.
inline const google::protobuf::Struct& RunAuthConfig(
    const idsync::v1::SyncRequest& request,
    const google::protobuf::Struct& created_with) {
  return request.auth_config().fields().empty() ? created_with
                                                : request.auth_config();
}

}  // namespace idsync

#endif  // IDSYNC_CONNECTOR_CONNECTOR_H_

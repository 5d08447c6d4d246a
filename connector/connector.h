// The connector SDK: what every connector type implements and how it hands
// records to the dispatcher.
//
// A connector reads a source and writes SyncChunks into a RecordSink. The
// chunk is the unit everywhere (hosted, agent, remote process), so a resume
// token always marks a chunk boundary. A Connector instance is used by one
// run at a time; it need not be thread-safe.
#ifndef IDSYNC_CONNECTOR_CONNECTOR_H_
#define IDSYNC_CONNECTOR_CONNECTOR_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
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

}  // namespace idsync

#endif  // IDSYNC_CONNECTOR_CONNECTOR_H_

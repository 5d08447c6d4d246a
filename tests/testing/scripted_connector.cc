#include "tests/testing/scripted_connector.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace idsync::testing {

std::vector<idsync::v1::RemoteIdentity> People(int first, int last,
                                               const std::string& department) {
  std::vector<idsync::v1::RemoteIdentity> out;
  for (int i = first; i < last; ++i) {
    idsync::v1::RemoteIdentity p;
    p.set_external_id(absl::StrCat("P", i));
    p.set_email(absl::StrCat("p", i, "@example.com"));
    p.set_first_name("First");
    p.set_last_name(absl::StrCat("Last", i));
    p.set_department(department);
    p.set_status("active");
    (*p.mutable_attributes())["location"] = "Berlin";
    out.push_back(std::move(p));
  }
  return out;
}

std::vector<idsync::v1::SyncChunk> Chunked(
    const std::vector<idsync::v1::RemoteIdentity>& people, int size) {
  std::vector<idsync::v1::SyncChunk> chunks;
  for (size_t i = 0; i < people.size(); ++i) {
    if (i % size == 0) chunks.emplace_back();
    *chunks.back().add_identities() = people[i];
  }
  return chunks;
}

absl::StatusOr<idsync::v1::ConnectorInfo> ScriptedConnector::Describe() {
  idsync::v1::ConnectorInfo info;
  info.set_type("scripted");
  return info;
}

absl::Status ScriptedConnector::Sync(const idsync::v1::SyncRequest& request,
                                     RecordSink& sink) {
  last_request_ = request;
  ++syncs_;
  size_t start = 0;
  if (!request.resume_token().empty() &&
      !absl::SimpleAtoi(request.resume_token(), &start)) {
    return absl::InvalidArgumentError("bad resume token");
  }
  int sent = 0;
  for (size_t i = start; i < chunks_.size(); ++i) {
    if (fail_after_ >= 0 && sent == fail_after_) return fail_status_;
    if (hook_) hook_(static_cast<int>(i));
    idsync::v1::SyncChunk chunk = chunks_[i];
    chunk.set_sequence(static_cast<int64_t>(i + 1));
    chunk.set_resume_token(absl::StrCat(i + 1));
    absl::Status s = sink.Write(std::move(chunk));
    if (!s.ok()) return s;
    ++sent;
  }
  if (!next_token_.empty()) sink.SetNextSyncToken(next_token_);
  return absl::OkStatus();
}

}  // namespace idsync::testing

// Fuzzes the REST API's request parsing (dispatcher/api/json_mapping.h):
// the first byte picks a ControlPlane method, the rest is its JSON body for
// ParseJson, or a query parameter "name=value" for SetFieldFromString.
//
// Invariant checked: what ParseJson accepts, ToJsonString writes back as
// JSON that ParseJson accepts again as an equal message.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/strings/string_view.h"
#include "dispatcher/api/json_mapping.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/message.h"
#include "google/protobuf/util/message_differencer.h"
#include "idsync/v1/control_plane.pb.h"
#include "tests/fuzz/fuzz_util.h"

namespace idsync {
namespace {

using fuzz::Check;
using google::protobuf::Message;

std::unique_ptr<Message> NewRequest(uint8_t selector) {
  static const google::protobuf::ServiceDescriptor* service =
      idsync::v1::GetByIdRequest::descriptor()->file()->FindServiceByName(
          "ControlPlane");
  const google::protobuf::MethodDescriptor* method =
      service->method(selector % service->method_count());
  return std::unique_ptr<Message>(
      google::protobuf::MessageFactory::generated_factory()
          ->GetPrototype(method->input_type())
          ->New());
}

void FuzzBody(uint8_t selector, absl::string_view body) {
  std::unique_ptr<Message> request = NewRequest(selector);
  if (!ParseJson(body, request.get()).ok()) return;
  const std::string printed = ToJsonString(*request);
  std::unique_ptr<Message> again(request->New());
  Check(ParseJson(printed, again.get()).ok(),
        "ParseJson refused what ToJsonString printed");
  Check(google::protobuf::util::MessageDifferencer::Equals(*request, *again),
        "a request changed in a JSON round trip");
}

void FuzzQuery(uint8_t selector, absl::string_view query) {
  const size_t eq = query.find('=');
  if (eq == absl::string_view::npos) return;
  std::unique_ptr<Message> request = NewRequest(selector);
  if (SetFieldFromString(std::string(query.substr(0, eq)), query.substr(eq + 1),
                         request.get())
          .ok()) {
    (void)ToJsonString(*request);
  }
}

}  // namespace
}  // namespace idsync

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const absl::string_view rest(reinterpret_cast<const char*>(data) + 1,
                               size - 1);
  idsync::FuzzBody(data[0], rest);
  idsync::FuzzQuery(data[0], rest);
  return 0;
}

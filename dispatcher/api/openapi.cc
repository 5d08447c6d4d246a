#include "dispatcher/api/openapi.h"

#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "dispatcher/api/json_mapping.h"
#include "dispatcher/api/rest_routes.h"
#include "google/protobuf/descriptor.h"

namespace idsync {

nlohmann::json OpenApiDocument(const std::string& version) {
  std::set<std::string> referenced;
  nlohmann::json paths = nlohmann::json::object();
  const nlohmann::json error_response = {
      {"description", "An error: {code, message, details, request_id}"},
      {"content",
       {{"application/json",
         {{"schema", {{"$ref", "#/components/schemas/Error"}}}}}}}};
  for (const Route& route : Routes()) {
    nlohmann::json op = {{"operationId", route.operation_id},
                         {"summary", route.summary},
                         {"tags", {route.tag}}};
    nlohmann::json parameters = nlohmann::json::array();
    for (const std::string& name : PathParameters(route.path)) {
      parameters.push_back(
          {{"name", name},
           {"in", "path"},
           {"required", true},
           {"schema", {{"type", "integer"}, {"format", "int64"}}}});
    }
    if (route.body) {
      referenced.insert(route.request->name());
      op["requestBody"] = {
          {"required", route.access == Access::kWrite &&
                           std::string(route.method) == "POST"},
          {"content",
           {{"application/json",
             {{"schema",
               {{"$ref", absl::StrCat("#/components/schemas/",
                                      route.request->name())}}}}}}}};
    } else if (std::string(route.method) == "GET") {
      std::set<std::string> unused;
      const nlohmann::json fields =
          SchemaOf(route.request, false, &unused)["properties"];
      for (const auto& [name, schema] : fields.items()) {
        if ((route.path_field != nullptr && name == route.path_field) ||
            (route.second_path_field != nullptr &&
             name == route.second_path_field)) {
          continue;
        }
        parameters.push_back({{"name", name},
                              {"in", "query"},
                              {"required", false},
                              {"schema", schema}});
      }
    }
    if (route.access == Access::kWrite) {
      parameters.push_back(
          {{"name", "Idempotency-Key"},
           {"in", "header"},
           {"required", false},
           {"description",
            "Replays the stored response of an earlier request with the same "
            "key and body (24 h)"},
           {"schema", {{"type", "string"}, {"maxLength", 255}}}});
    }
    if (!parameters.empty()) op["parameters"] = parameters;
    referenced.insert(route.response->name());
    op["responses"] = {
        {absl::StrCat(route.status),
         {{"description", "Success"},
          {"content",
           {{"application/json",
             {{"schema",
               {{"$ref", absl::StrCat("#/components/schemas/",
                                      route.response->name())}}}}}}}}},
        {"default", error_response}};
    std::string method(route.method);
    absl::AsciiStrToLower(&method);
    paths[route.path][method] = op;
  }
  paths["/api/v1/sync-runs/{id}/events"]["get"] = {
      {"operationId", "watchSyncRun"},
      {"summary",
       "Server-Sent Events: a 'run' event per change, then 'end' with the "
       "final state (data: a SyncRun)"},
      {"tags", {"sync-runs"}},
      {"parameters",
       {{{"name", "id"},
         {"in", "path"},
         {"required", true},
         {"schema", {{"type", "integer"}, {"format", "int64"}}}}}},
      {"responses",
       {{"200",
         {{"description", "An event stream"},
          {"content",
           {{"text/event-stream", {{"schema", {{"type", "string"}}}}}}}}},
        {"default", error_response}}}};
  referenced.insert("SyncRun");
  const nlohmann::json no_auth = nlohmann::json::array();
  paths["/health"]["get"] = {
      {"operationId", "health"},
      {"summary", "Liveness: status, version, time"},
      {"tags", {"operations"}},
      {"security", no_auth},
      {"responses",
       {{"200",
         {{"description", "Healthy"},
          {"content",
           {{"application/json",
             {{"schema",
               {{"$ref", "#/components/schemas/HealthResponse"}}}}}}}}}}}};
  referenced.insert("HealthResponse");
  paths["/metrics"]["get"] = {
      {"operationId", "metrics"},
      {"summary", "Prometheus metrics"},
      {"tags", {"operations"}},
      {"responses",
       {{"200",
         {{"description", "Prometheus text format"},
          {"content", {{"text/plain", {{"schema", {{"type", "string"}}}}}}}}},
        {"default", error_response}}}};
  paths["/openapi.json"]["get"] = {
      {"operationId", "openapi"},
      {"summary", "This document"},
      {"tags", {"operations"}},
      {"security", no_auth},
      {"responses",
       {{"200",
         {{"description", "OpenAPI 3.0 document"},
          {"content",
           {{"application/json", {{"schema", {{"type", "object"}}}}}}}}}}}};

  // Schemas of every referenced message, following nested references.
  nlohmann::json schemas = nlohmann::json::object();
  std::set<std::string> done;
  const auto* pool = google::protobuf::DescriptorPool::generated_pool();
  while (true) {
    std::set<std::string> pending;
    for (const std::string& name : referenced) {
      if (!done.count(name)) pending.insert(name);
    }
    if (pending.empty()) break;
    for (const std::string& name : pending) {
      done.insert(name);
      const google::protobuf::Descriptor* d =
          pool->FindMessageTypeByName(absl::StrCat("idsync.v1.", name));
      if (d == nullptr) continue;
      const bool response = !absl::EndsWith(name, "Request");
      schemas[name] = SchemaOf(d, response, &referenced);
    }
  }
  schemas["Error"] = {
      {"type", "object"},
      {"required", {"code", "message", "details", "request_id"}},
      {"properties",
       {{"code", {{"type", "string"}}},
        {"message", {{"type", "string"}}},
        {"details", {{"type", "object"}}},
        {"request_id", {{"type", "string"}}}}}};
  return {
      {"openapi", "3.0.3"},
      {"info",
       {{"title", "idsync control plane"},
        {"version", version},
        {"description",
         "Identities, accounts, entitlements and grants synced from sources; "
         "connectors and their sync runs; on-prem agents; webhooks and "
         "their deliveries; tokens and the audit log. "
         "Authenticate with 'Authorization: Bearer <token>'."}}},
      {"servers", {{{"url", "/"}}}},
      {"security", {{{"bearer", nlohmann::json::array()}}}},
      {"paths", paths},
      {"components",
       {{"securitySchemes",
         {{"bearer", {{"type", "http"}, {"scheme", "bearer"}}}}},
        {"schemas", schemas}}}};
}

}  // namespace idsync

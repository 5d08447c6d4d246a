#include "connector/http/http_client.h"

#include <curl/curl.h>
#include <sys/socket.h>

#include <algorithm>
#include <cctype>
#include <mutex>
#include <string>

#include "absl/random/random.h"
#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "connector/http/address_policy.h"

namespace idsync {
namespace {

void GlobalInit() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

// What one transfer collects; the write callback enforces the size bound.
struct Transfer {
  HttpResponse response;
  size_t max_bytes = 0;
  bool too_large = false;
  std::string refused_address;  // Set by OnOpenSocket; the last refused.
  const AddressPolicy* policy = nullptr;
};

// Only under a restricting address policy: the connect-time SSRF check, on
// the address libcurl resolved and is about to connect to.
curl_socket_t OnOpenSocket(void* user, curlsocktype purpose,
                           curl_sockaddr* address) {
  auto* t = static_cast<Transfer*>(user);
  if (!t->policy->Allows(&address->addr)) {
    t->refused_address = AddressToString(&address->addr);
    return CURL_SOCKET_BAD;  // libcurl tries the next address, if any.
  }
  return ::socket(address->family, address->socktype, address->protocol);
}

size_t OnBody(char* data, size_t size, size_t count, void* user) {
  auto* t = static_cast<Transfer*>(user);
  const size_t n = size * count;
  if (t->response.body.size() + n > t->max_bytes) {
    t->too_large = true;
    return 0;  // Aborts the transfer with CURLE_WRITE_ERROR.
  }
  t->response.body.append(data, n);
  return n;
}

size_t OnHeader(char* data, size_t size, size_t count, void* user) {
  auto* t = static_cast<Transfer*>(user);
  const size_t n = size * count;
  absl::string_view line(data, n);
  if (absl::StartsWith(line, "HTTP/")) {
    t->response.headers.clear();  // A new response (after 100 Continue).
    return n;
  }
  const size_t colon = line.find(':');
  if (colon == absl::string_view::npos) return n;
  t->response.headers.emplace_back(
      absl::AsciiStrToLower(absl::StripAsciiWhitespace(line.substr(0, colon))),
      std::string(absl::StripAsciiWhitespace(line.substr(colon + 1))));
  return n;
}

absl::Status TransportError(CURLcode code, const Transfer& t,
                            const HttpClientOptions& options,
                            absl::string_view url) {
  const std::string where = RedactUrl(url);
  if (!t.refused_address.empty() && code == CURLE_COULDNT_CONNECT) {
    return absl::PermissionDeniedError(absl::StrCat(
        "refused to connect to non-public address ", t.refused_address, " for ",
        where, " (private targets are not allowed)"));
  }
  switch (code) {
    case CURLE_WRITE_ERROR:
      if (t.too_large) {
        return absl::ResourceExhaustedError(
            absl::StrCat("response from ", where, " is larger than ",
                         options.max_response_bytes, " bytes"));
      }
      break;
    case CURLE_FILESIZE_EXCEEDED:
      return absl::ResourceExhaustedError(
          absl::StrCat("response from ", where, " is larger than ",
                       options.max_response_bytes, " bytes"));
    case CURLE_OPERATION_TIMEDOUT:
      return absl::DeadlineExceededError(
          absl::StrCat("request to ", where, " timed out after ",
                       absl::FormatDuration(options.timeout)));
    case CURLE_UNSUPPORTED_PROTOCOL:
      // With an http(s) URL, what curl could not speak is the answer (an
      // HTTP/0.9 one: another protocol on that port).
      if (absl::StartsWithIgnoreCase(where, "http://") ||
          absl::StartsWithIgnoreCase(where, "https://")) {
        return absl::FailedPreconditionError(absl::StrCat(
            where, " does not answer in HTTP: ", curl_easy_strerror(code)));
      }
      [[fallthrough]];
    case CURLE_URL_MALFORMAT:
      return absl::InvalidArgumentError(
          absl::StrCat("bad URL ", where, ": ", curl_easy_strerror(code)));
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CERTPROBLEM:
      return absl::FailedPreconditionError(
          absl::StrCat("TLS verification of ", where,
                       " failed: ", curl_easy_strerror(code)));
    default:
      break;
  }
  return absl::UnavailableError(absl::StrCat(
      "request to ", where, " failed: ", curl_easy_strerror(code)));
}

bool RetryableStatus(int status) {
  return status == 408 || status == 429 || status == 500 || status == 502 ||
         status == 503 || status == 504;
}

}  // namespace

struct HttpClient::Impl {
  absl::Mutex mu;
  CURL* curl ABSL_GUARDED_BY(mu) = nullptr;
  int64_t attempts ABSL_GUARDED_BY(mu) = 0;
  absl::BitGen rng ABSL_GUARDED_BY(mu);
  ~Impl() {
    if (curl != nullptr) curl_easy_cleanup(curl);
  }
};

std::optional<std::string> HttpResponse::Header(absl::string_view name) const {
  for (const auto& [key, value] : headers) {
    if (absl::EqualsIgnoreCase(key, name)) return value;
  }
  return std::nullopt;
}

absl::StatusOr<std::unique_ptr<HttpClient>> HttpClient::Create(
    HttpClientOptions options) {
  if (options.max_attempts < 1 || options.max_response_bytes == 0 ||
      options.timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        "http client: max_attempts, max_response_bytes and timeout must be "
        "positive");
  }
  GlobalInit();
  auto impl = std::make_unique<Impl>();
  {
    absl::MutexLock lock(&impl->mu);
    impl->curl = curl_easy_init();
    if (impl->curl == nullptr) {
      return absl::ResourceExhaustedError("http client: curl_easy_init failed");
    }
  }
  return std::unique_ptr<HttpClient>(
      new HttpClient(std::move(options), std::move(impl)));
}

HttpClient::HttpClient(HttpClientOptions options, std::unique_ptr<Impl> impl)
    : options_(std::move(options)), impl_(std::move(impl)) {
  if (options_.requests_per_second > 0) {
    limiter_ = std::make_unique<RateLimiter>(*options_.clock,
                                             options_.requests_per_second,
                                             std::max(1.0, options_.burst));
  }
}

HttpClient::~HttpClient() = default;

int64_t HttpClient::attempts() const {
  absl::MutexLock lock(&impl_->mu);
  return impl_->attempts;
}

absl::StatusOr<HttpResponse> HttpClient::SendOnce(const HttpRequest& request) {
  if (limiter_ != nullptr) {
    for (;;) {
      const RateLimiter::Decision d = limiter_->Take(0);
      if (d.allowed) break;
      options_.clock->SleepFor(d.retry_after);
    }
  }
  absl::MutexLock lock(&impl_->mu);
  ++impl_->attempts;
  CURL* c = impl_->curl;
  // Reset keeps the connection cache, so the next request reuses the socket.
  curl_easy_reset(c);
  Transfer t;
  t.max_bytes = options_.max_response_bytes;
  curl_easy_setopt(c, CURLOPT_URL, request.url.c_str());
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(
      c, CURLOPT_TIMEOUT_MS,
      static_cast<long>(absl::ToInt64Milliseconds(options_.timeout)));
  curl_easy_setopt(
      c, CURLOPT_CONNECTTIMEOUT_MS,
      static_cast<long>(absl::ToInt64Milliseconds(options_.connect_timeout)));
  curl_easy_setopt(c, CURLOPT_MAXFILESIZE_LARGE,
                   static_cast<curl_off_t>(options_.max_response_bytes));
  curl_easy_setopt(c, CURLOPT_ACCEPT_ENCODING, "");  // Any curl can decode.
  curl_easy_setopt(c, CURLOPT_USERAGENT, options_.user_agent.c_str());
  curl_easy_setopt(c, CURLOPT_TCP_NODELAY, 1L);
  curl_blob ca_blob{};
  if (!options_.ca_pem.empty()) {
    ca_blob.data = const_cast<char*>(options_.ca_pem.data());
    ca_blob.len = options_.ca_pem.size();
    ca_blob.flags = CURL_BLOB_NOCOPY;  // Options outlive the transfer.
    curl_easy_setopt(c, CURLOPT_CAINFO_BLOB, &ca_blob);
  } else if (!options_.ca_file.empty()) {
    curl_easy_setopt(c, CURLOPT_CAINFO, options_.ca_file.c_str());
  }
  if (options_.address_policy != nullptr && !options_.address_policy->any()) {
    t.policy = options_.address_policy.get();
    curl_easy_setopt(c, CURLOPT_OPENSOCKETFUNCTION, OnOpenSocket);
    curl_easy_setopt(c, CURLOPT_OPENSOCKETDATA, &t);
    // No proxy, not even from https_proxy & co. in the environment ("" says
    // so): a proxy connects for us, so the check above would judge the
    // proxy's address (refusing an internal proxy, or waving any target
    // through a public one) and never the target's. Deliveries that must go
    // out through a proxy need one that enforces the egress policy itself.
    curl_easy_setopt(c, CURLOPT_PROXY, "");
  }
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, OnBody);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &t);
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, OnHeader);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, &t);

  if (request.method == "GET" && request.body.empty()) {
    curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
  } else if (request.method == "HEAD") {
    curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
  } else {
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, request.method.c_str());
  }
  if (!request.body.empty() || request.method == "POST" ||
      request.method == "PUT" || request.method == "PATCH") {
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE,
                     static_cast<curl_off_t>(request.body.size()));
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, request.body.data());
  }
  curl_slist* headers = nullptr;
  // No "Expect: 100-continue" round trip for large bodies.
  headers = curl_slist_append(headers, "Expect:");
  for (const auto& [name, value] : request.headers) {
    const std::string line = absl::StrCat(name, ": ", value);
    headers = curl_slist_append(headers, line.c_str());
  }
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
  const CURLcode code = curl_easy_perform(c);
  curl_slist_free_all(headers);
  if (code != CURLE_OK) return TransportError(code, t, options_, request.url);
  long status = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
  t.response.status = static_cast<int>(status);
  return std::move(t.response);
}

absl::Duration HttpClient::Backoff(int attempt) {
  absl::Duration d = options_.initial_backoff;
  for (int i = 1; i < attempt && d < options_.max_backoff; ++i) d *= 2;
  d = std::min(d, options_.max_backoff);
  absl::MutexLock lock(&impl_->mu);
  // +-20% so clients that failed together do not retry together.
  return d * absl::Uniform(impl_->rng, 0.8, 1.2);
}

absl::StatusOr<HttpResponse> HttpClient::Send(const HttpRequest& request) {
  for (int attempt = 1;; ++attempt) {
    absl::StatusOr<HttpResponse> r = SendOnce(request);
    const bool last = attempt >= options_.max_attempts;
    if (!r.ok()) {
      const bool transient = absl::IsUnavailable(r.status()) ||
                             absl::IsDeadlineExceeded(r.status());
      if (!transient || last) return r;
      options_.clock->SleepFor(Backoff(attempt));
      continue;
    }
    if (!RetryableStatus(r->status) || last) return r;
    absl::Duration wait = Backoff(attempt);
    if (r->status == 429 || r->status == 503) {
      if (std::optional<std::string> ra = r->Header("retry-after")) {
        std::optional<absl::Duration> asked =
            ParseRetryAfter(*ra, options_.clock->Now());
        if (asked.has_value()) {
          if (*asked > options_.max_retry_after) return r;
          wait = *asked;
        }
      }
    }
    options_.clock->SleepFor(wait);
  }
}

std::string RedactUrl(absl::string_view url) {
  url = url.substr(0, url.find_first_of("?#"));
  const size_t scheme = url.find("://");
  const size_t host_start = scheme == absl::string_view::npos ? 0 : scheme + 3;
  const size_t path = url.find('/', host_start);
  const size_t at = url.substr(0, path).rfind('@');
  if (at == absl::string_view::npos || at < host_start) return std::string(url);
  return absl::StrCat(url.substr(0, host_start), url.substr(at + 1));
}

std::optional<absl::Duration> ParseRetryAfter(absl::string_view value,
                                              absl::Time now) {
  value = absl::StripAsciiWhitespace(value);
  if (value.empty()) return std::nullopt;
  int64_t seconds = 0;
  if (std::all_of(value.begin(), value.end(),
                  [](char ch) { return absl::ascii_isdigit(ch); })) {
    if (value.size() > 9 || !absl::SimpleAtoi(value, &seconds)) {
      return absl::InfiniteDuration();  // Longer than any limit.
    }
    return absl::Seconds(seconds);
  }
  const std::string date(value);
  const time_t when = curl_getdate(date.c_str(), nullptr);
  if (when < 0) return std::nullopt;
  return std::max(absl::ZeroDuration(), absl::FromTimeT(when) - now);
}

std::string UrlEncode(absl::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(text.size());
  for (unsigned char ch : text) {
    if (absl::ascii_isalnum(ch) || ch == '-' || ch == '.' || ch == '_' ||
        ch == '~') {
      out.push_back(static_cast<char>(ch));
    } else {
      out.push_back('%');
      out.push_back(kHex[ch >> 4]);
      out.push_back(kHex[ch & 15]);
    }
  }
  return out;
}

}  // namespace idsync

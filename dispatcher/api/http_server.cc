// Boost.Beast was chosen over GNU libmicrohttpd (both in Debian 12): Beast
// gives each phase its own deadline (header, body, idle, write) on one
// timer per connection, its parser is strict where it matters (conflicting
// Content-Length, a field line without a colon, bare LF, "+7" are errors),
// a body can be taken in memory or streamed to a file chosen after the
// header was read, and event streams are plain async writes. libmicrohttpd's
// timeout is an idle time (a byte every few seconds keeps a slowloris
// connection alive) and long-lived responses need suspend/resume.
#include "dispatcher/api/http_server.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/url.hpp>
#include <boost/url/src.hpp>  // Boost.URL, header-only: built in this TU.
#include <chrono>
#include <deque>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"

namespace idsync {
namespace {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;

std::chrono::steady_clock::duration Chrono(absl::Duration d) {
  return absl::ToChronoNanoseconds(d);
}

// A fixed set of threads taking tasks from a bounded queue.
class WorkerPool {
 public:
  WorkerPool(int threads, size_t max_queued) : max_queued_(max_queued) {
    for (int i = 0; i < threads; ++i) {
      threads_.emplace_back([this] { Run(); });
    }
  }
  ~WorkerPool() { Stop(); }

  // false when the queue is full or the pool stopped.
  bool Submit(std::function<void()> task) {
    absl::MutexLock lock(&mu_);
    if (stopping_ || tasks_.size() >= max_queued_) return false;
    tasks_.push_back(std::move(task));
    return true;
  }

  // Runs no more tasks; drops queued ones; joins.
  void Stop() {
    {
      absl::MutexLock lock(&mu_);
      stopping_ = true;
      tasks_.clear();
    }
    for (std::thread& t : threads_) {
      if (t.joinable()) t.join();
    }
  }

 private:
  void Run() {
    while (true) {
      std::function<void()> task;
      {
        absl::MutexLock lock(&mu_);
        mu_.Await(absl::Condition(
            +[](WorkerPool* p) ABSL_EXCLUSIVE_LOCKS_REQUIRED(p->mu_) {
              return p->stopping_ || !p->tasks_.empty();
            },
            this));
        if (stopping_) return;
        task = std::move(tasks_.front());
        tasks_.pop_front();
      }
      task();
    }
  }

  const size_t max_queued_;
  absl::Mutex mu_;
  std::deque<std::function<void()>> tasks_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

// The message for a parse error the client caused.
std::string ParseErrorMessage(const beast::error_code& ec) {
  if (ec == http::error::bad_content_length) {
    return "Content-Length is not one number of bytes (or conflicts with "
           "another Content-Length or a Transfer-Encoding)";
  }
  if (ec == http::error::multiple_content_length) {
    return "two different Content-Length headers";
  }
  if (ec == http::error::bad_field || ec == http::error::bad_value) {
    return "a header line is malformed (no colon, a space before the colon, "
           "or a control character)";
  }
  if (ec == http::error::bad_version || ec == http::error::bad_target ||
      ec == http::error::bad_method) {
    return "the request line is malformed (method, target or HTTP version; "
           "lines end in CRLF)";
  }
  if (ec == http::error::bad_line_ending) {
    return "lines must end in CRLF";
  }
  return absl::StrCat("the request is not valid HTTP/1.1 (", ec.message(), ")");
}

// Whether what is left of a header beast refused (it consumes the lines it
// parsed) declares a Content-Length of digits only: one too large for 64
// bits, a 413 rather than a 400.
bool HugeContentLength(absl::string_view raw) {
  const std::string lower =
      "\n" + absl::AsciiStrToLower(raw.substr(0, 64 << 10));
  const size_t at = lower.find("\ncontent-length:");
  if (at == std::string::npos) return false;
  absl::string_view value = absl::string_view(lower).substr(at + 16);
  value = value.substr(0, value.find('\r'));
  value = absl::StripAsciiWhitespace(value);
  return value.size() >= 20 &&
         value.find_first_not_of("0123456789") == absl::string_view::npos;
}

}  // namespace

absl::string_view HttpServerRequest::Header(absl::string_view name) const {
  for (const auto& [n, v] : headers) {
    if (n == name) return v;
  }
  return "";
}

bool HttpServerRequest::HasHeader(absl::string_view name) const {
  return HeaderCount(name) > 0;
}

int HttpServerRequest::HeaderCount(absl::string_view name) const {
  int n = 0;
  for (const auto& h : headers) n += h.first == name;
  return n;
}

class HttpServer::Impl {
 public:
  Impl(HttpHandler& handler, HttpServerOptions options)
      : handler_(handler),
        options_(std::move(options)),
        ioc_(options_.io_threads),
        workers_(options_.worker_threads, options_.max_queued) {}

  ~Impl() { Stop(); }

  absl::Status Start();
  void Stop();

  class Session;

  // Constant after construction.
  HttpHandler& handler_;
  const HttpServerOptions options_;

  // Connection counts, by address.
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, int> per_address_ ABSL_GUARDED_BY(mu_);
  int open_ ABSL_GUARDED_BY(mu_) = 0;

  std::atomic<int64_t> refused_{0}, timeouts_{0}, malformed_{0}, overloaded_{0},
      streams_{0};
  std::atomic<int> port_{0};

  // Sessions live in handlers queued on ioc_, so ioc_ is destroyed (with
  // them) before the counters above.
  net::io_context ioc_;
  std::optional<tcp::acceptor> acceptor_;
  std::vector<std::thread> io_threads_;
  WorkerPool workers_;
  bool stopped_ = false;

 private:
  void Accept();
  bool Admit(const std::string& address);
};

// One connection. Its state is touched on its strand only, but for
// `request_`, which a worker reads while the strand waits for it.
class HttpServer::Impl::Session : public std::enable_shared_from_this<Session> {
 public:
  Session(Impl& server, tcp::socket socket, std::string peer)
      : server_(server),
        stream_(std::move(socket)),
        peer_(std::move(peer)),
        poll_timer_(stream_.get_executor()) {}

  ~Session() {
    if (streaming_) --server_.streams_;
    absl::MutexLock lock(&server_.mu_);
    --server_.open_;
    auto it = server_.per_address_.find(peer_);
    if (it != server_.per_address_.end() && --it->second <= 0) {
      server_.per_address_.erase(it);
    }
  }

  void Begin() { WaitForRequest(); }

 private:
  const HttpServerOptions& options() const { return server_.options_; }
  HttpHandler& handler() { return server_.handler_; }

  // Idle until the first byte of the next request.
  void WaitForRequest() {
    request_ = HttpServerRequest();
    request_.peer = peer_;
    if (buffer_.size() > 0) return ReadHeader();  // Pipelined.
    stream_.expires_after(Chrono(options().idle_timeout));
    stream_.async_read_some(
        buffer_.prepare(4096),
        [self = shared_from_this()](beast::error_code ec, size_t n) {
          if (ec) return self->Close(ec);
          self->buffer_.commit(n);
          self->ReadHeader();
        });
  }

  void ReadHeader() {
    header_.emplace();
    header_->header_limit(static_cast<uint32_t>(options().max_header_bytes));
    // The body's limit is the route's (PlanBody), checked after the header.
    header_->body_limit(boost::none);
    stream_.expires_after(Chrono(options().header_timeout));
    http::async_read_header(
        stream_, buffer_, *header_,
        [self = shared_from_this()](beast::error_code ec, size_t) {
          self->OnHeader(ec);
        });
  }

  void OnHeader(beast::error_code ec) {
    // The tcp_stream's timer closes the socket when it fires, pending
    // operation or not: every phase sets its own and clears it after.
    stream_.expires_never();
    if (ec == beast::error::timeout) {
      ++server_.timeouts_;
      return Refuse(408, "the request header did not arrive in time");
    }
    if (ec == http::error::end_of_stream || ec == net::error::eof ||
        ec == net::error::connection_reset ||
        ec == net::error::operation_aborted) {
      return Close(ec);
    }
    if (ec == http::error::header_limit &&
        header_->get().method_string().empty() &&
        absl::string_view(static_cast<const char*>(buffer_.data().data()),
                          buffer_.size())
                .substr(0, options().max_header_bytes)
                .find('\n') == absl::string_view::npos) {
      // The request line alone fills the header's bound: a long URL. (The
      // parser consumes the lines it has read, the request line first.)
      return Refuse(414, "the request URL is too long");
    }
    if (ec == http::error::header_limit) {
      return Refuse(431, absl::StrCat("the request header is larger than ",
                                      options().max_header_bytes, " bytes"));
    }
    if (ec == http::error::bad_content_length &&
        HugeContentLength(absl::string_view(
            static_cast<const char*>(buffer_.data().data()), buffer_.size()))) {
      return Refuse(413, absl::StrCat("the body is larger than ",
                                      options().max_body_bytes, " bytes"));
    }
    if (ec) return Refuse(400, ParseErrorMessage(ec));
    const auto& h = header_->get();
    request_.method = std::string(h.method_string());
    // Beast takes equal Content-Lengths as one; a proxy in front may not.
    // (Folded lines it unfolds into spaces, as RFC 9112 5.2 allows.)
    if (h.count(http::field::content_length) > 1) {
      return Refuse(400, "two Content-Length headers");
    }
    for (const auto& field : h) {
      request_.headers.emplace_back(
          absl::AsciiStrToLower(std::string(field.name_string())),
          std::string(field.value()));
    }
    auto target = boost::urls::parse_origin_form(
        std::string_view(h.target().data(), h.target().size()));
    if (!target) {
      return Refuse(400,
                    "the request target is not a valid path and query "
                    "(bad percent-encoding, spaces, or an absolute URL)");
    }
    request_.path = std::string(target->encoded_path());
    for (auto param : target->params()) {
      if (param.key.empty() && !param.has_value) continue;
      request_.query.emplace_back(param.key, param.value);
    }
    keep_alive_ = h.keep_alive();
    if (header_->chunked() || request_.HasHeader("transfer-encoding")) {
      return Refuse(411,
                    "send the body with a Content-Length (no "
                    "Transfer-Encoding)");
    }
    const absl::string_view encoding = request_.Header("content-encoding");
    if (!encoding.empty() && !absl::EqualsIgnoreCase(encoding, "identity")) {
      return Refuse(415,
                    "Content-Encoding is not supported: send the body "
                    "uncompressed");
    }
    const uint64_t length = header_->content_length().value_or(0);
    const bool takes_body =
        h.method() == http::verb::post || h.method() == http::verb::put ||
        h.method() == http::verb::patch || h.method() == http::verb::delete_;
    if (!takes_body && length > 0) {
      return Refuse(400,
                    absl::StrCat(request_.method, " requests take no body"));
    }
    plan_ = handler().PlanBody(request_);
    if (plan_.reject.has_value()) {
      HttpServerResponse r = std::move(*plan_.reject);
      r.close = true;
      return Write(std::move(r));
    }
    if (length > plan_.limit) {
      return Refuse(
          413, absl::StrCat("the body is larger than ", plan_.limit, " bytes"));
    }
    if (plan_.kind != BodyPlan::kFile) return ReadBody();
    auto self = shared_from_this();
    if (!server_.workers_.Submit([self] {
          auto admission =
              std::make_shared<Admission>(self->plan_.admit(self->request_));
          net::post(self->stream_.get_executor(), [self, admission] {
            if (admission->refuse.has_value()) {
              admission->refuse->close = true;
              return self->Write(std::move(*admission->refuse));
            }
            if (!admission->file) {
              return self->Refuse(500, "the upload has nowhere to go");
            }
            self->request_.context = std::move(admission->context);
            self->upload_fd_ = std::move(admission->file);
            self->ReadBody();
          });
        })) {
      ++server_.overloaded_;
      return Refuse(503, "the server is busy; retry later");
    }
  }

  void ReadBody() {
    if (header_->is_done()) {  // No body.
      upload_fd_ = UniqueFd();
      return Dispatch();
    }
    // A client that asked first (curl does for bodies over 1 KiB) sends
    // the body only now, after the checks above.
    if (absl::EqualsIgnoreCase(request_.Header("expect"), "100-continue")) {
      auto cont =
          std::make_shared<std::string>("HTTP/1.1 100 Continue\r\n\r\n");
      stream_.expires_after(Chrono(options().write_timeout));
      net::async_write(
          stream_, net::buffer(*cont),
          [self = shared_from_this(), cont](beast::error_code ec, size_t) {
            self->stream_.expires_never();
            if (ec) return self->Close(ec);
            self->StartBody();
          });
      return;
    }
    StartBody();
  }

  void StartBody() {
    if (plan_.kind == BodyPlan::kFile) return StartFileBody();
    body_.emplace(std::move(*header_));
    body_->body_limit(plan_.limit);
    stream_.expires_after(Chrono(options().body_timeout));
    http::async_read(stream_, buffer_, *body_,
                     [self = shared_from_this()](beast::error_code ec, size_t) {
                       self->OnBody(ec);
                     });
  }

  void OnBody(beast::error_code ec) {
    stream_.expires_never();
    if (ec == beast::error::timeout) {
      ++server_.timeouts_;
      return Close(ec);
    }
    if (ec == http::error::body_limit) {
      return Refuse(
          413, absl::StrCat("the body is larger than ", plan_.limit, " bytes"));
    }
    if (ec) return Close(ec);
    request_.body = std::move(body_->get().body());
    request_.body_bytes = request_.body.size();
    body_.reset();
    Dispatch();
  }

  void StartFileBody() {
    file_.emplace(std::move(*header_));
    file_->body_limit(plan_.limit);
    file_->get().body().file().native_handle(upload_fd_.release());
    ReadFileBody();
  }

  void ReadFileBody() {
    stream_.expires_after(Chrono(plan_.idle_timeout));
    http::async_read_some(
        stream_, buffer_, *file_,
        [self = shared_from_this()](beast::error_code ec, size_t) {
          self->stream_.expires_never();
          if (ec == beast::error::timeout) {
            ++self->server_.timeouts_;
            return self->Close(ec);
          }
          if (ec == http::error::body_limit) {
            return self->Refuse(413, absl::StrCat("the body is larger than ",
                                                  self->plan_.limit, " bytes"));
          }
          if (ec) return self->Close(ec);
          if (!self->file_->is_done()) return self->ReadFileBody();
          // The file was empty when handed over: where writing ended is
          // what was written.
          beast::error_code pos_ec;
          const uint64_t written = self->file_->get().body().file().pos(pos_ec);
          if (pos_ec) return self->Close(pos_ec);
          self->request_.body_bytes = static_cast<size_t>(written);
          self->file_.reset();  // Closes the descriptor.
          self->Dispatch();
        });
  }

  void Dispatch() {
    stream_.expires_never();
    auto self = shared_from_this();
    if (!server_.workers_.Submit([self] {
          HttpServerResponse response = self->handler().Handle(self->request_);
          net::post(self->stream_.get_executor(),
                    [self, response = std::move(response)]() mutable {
                      self->Write(std::move(response));
                    });
        })) {
      ++server_.overloaded_;
      request_.context.reset();  // Its owner cleans up (a temp file).
      return Refuse(503, "the server is busy; retry later");
    }
  }

  void Refuse(int status, absl::string_view message) {
    if (status != 408) ++server_.malformed_;
    HttpServerResponse r = handler().Refusal(status, message, request_);
    r.close = true;
    if (status == 503) r.headers.emplace_back("Retry-After", "1");
    Write(std::move(r));
  }

  void Write(HttpServerResponse response) {
    if (response.stream != nullptr) return StartStream(std::move(response));
    auto res = std::make_shared<http::response<http::string_body>>();
    res->result(response.status);
    res->version(11);
    for (auto& [name, value] : response.headers) res->insert(name, value);
    const size_t size = response.body.size();
    const bool head = request_.method == "HEAD";
    if (!head) res->body() = std::move(response.body);
    res->content_length(size);
    const bool keep = keep_alive_ && !response.close;
    res->keep_alive(keep);
    handler().Sent(request_, response.status);
    stream_.expires_after(Chrono(options().write_timeout));
    if (head) {
      auto sr =
          std::make_shared<http::response_serializer<http::string_body>>(*res);
      http::async_write_header(
          stream_, *sr,
          [self = shared_from_this(), res, sr, keep](
              beast::error_code ec, size_t) { self->AfterWrite(ec, keep); });
      return;
    }
    http::async_write(
        stream_, *res,
        [self = shared_from_this(), res, keep](beast::error_code ec, size_t) {
          self->AfterWrite(ec, keep);
        });
  }

  void AfterWrite(beast::error_code ec, bool keep) {
    stream_.expires_never();
    if (ec == beast::error::timeout) ++server_.timeouts_;
    if (ec || !keep) return Close(ec);
    WaitForRequest();
  }

  // --- Event streams: a chunked body, polled on a worker.

  void StartStream(HttpServerResponse response) {
    source_ = std::move(response.stream);
    streaming_ = true;
    ++server_.streams_;
    auto res = std::make_shared<http::response<http::empty_body>>();
    res->result(response.status);
    res->version(11);
    for (auto& [name, value] : response.headers) res->insert(name, value);
    res->chunked(true);
    res->keep_alive(false);
    handler().Sent(request_, response.status);
    auto sr =
        std::make_shared<http::response_serializer<http::empty_body>>(*res);
    stream_.expires_after(Chrono(options().write_timeout));
    std::weak_ptr<Session> weak = weak_from_this();
    net::any_io_executor strand = stream_.get_executor();
    source_->SetWaker([weak, strand] {
      net::post(strand, [weak] {
        if (auto self = weak.lock()) self->Wake();
      });
    });
    http::async_write_header(
        stream_, *sr,
        [self = shared_from_this(), res, sr](beast::error_code ec, size_t) {
          self->stream_.expires_never();
          if (ec) return self->Close(ec);
          self->WatchForHangUp();
          self->PollStream();
        });
  }

  // The client sends nothing on an event stream: any read completion is
  // its hang-up (or junk), which ends the stream at once.
  void WatchForHangUp() {
    stream_.socket().async_read_some(
        net::buffer(hangup_buffer_),
        [self = shared_from_this()](beast::error_code ec, size_t) {
          self->hung_up_ = true;
          self->poll_timer_.cancel();
          self->Close(ec);
        });
  }

  // A wake while a poll or a write is under way is kept for after it.
  void Wake() {
    wake_pending_ = true;
    if (!polling_) poll_timer_.cancel();
  }

  void PollStream() {
    if (hung_up_) return;
    polling_ = true;
    wake_pending_ = false;
    auto self = shared_from_this();
    if (!server_.workers_.Submit([self] {
          auto out = std::make_shared<std::string>();
          const bool more = self->source_->Poll(out.get());
          net::post(self->stream_.get_executor(),
                    [self, out, more] { self->AfterPoll(out, more); });
        })) {
      // Busy: try again after the interval.
      polling_ = false;
      return ArmPollTimer();
    }
  }

  void AfterPoll(std::shared_ptr<std::string> out, bool more) {
    polling_ = false;
    if (hung_up_) return;
    if (out->empty()) return more ? ArmPollTimer() : EndStream();
    auto chunk = std::make_shared<http::chunk_body<net::const_buffer>>(
        net::buffer(*out));
    stream_.expires_after(Chrono(options().write_timeout));
    net::async_write(stream_, *chunk,
                     [self = shared_from_this(), out, chunk, more](
                         beast::error_code ec, size_t) {
                       self->stream_.expires_never();
                       if (ec == beast::error::timeout) {
                         ++self->server_.timeouts_;
                       }
                       if (ec) return self->Close(ec);
                       if (!more) return self->EndStream();
                       self->ArmPollTimer();
                     });
  }

  void EndStream() {
    auto last = std::make_shared<http::chunk_last<http::chunk_crlf>>();
    stream_.expires_after(Chrono(options().write_timeout));
    net::async_write(stream_, *last,
                     [self = shared_from_this(), last](
                         beast::error_code ec, size_t) { self->Close(ec); });
  }

  void ArmPollTimer() {
    if (wake_pending_) return PollStream();
    poll_timer_.expires_after(Chrono(source_->interval()));
    poll_timer_.async_wait([self = shared_from_this()](beast::error_code) {
      // Expired or cancelled by Wake(): poll either way.
      if (!self->hung_up_ && !self->polling_) self->PollStream();
    });
  }

  void Close(beast::error_code) {
    if (closed_) return;
    closed_ = true;
    hung_up_ = true;
    poll_timer_.cancel();
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream_.close();
  }

  Impl& server_;
  beast::tcp_stream stream_;
  const std::string peer_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::empty_body>> header_;
  std::optional<http::request_parser<http::string_body>> body_;
  std::optional<http::request_parser<http::file_body>> file_;
  HttpServerRequest request_;
  BodyPlan plan_;
  UniqueFd upload_fd_;  // kFile: admitted, body not yet read.
  bool keep_alive_ = false;
  bool closed_ = false;
  // Event streams.
  std::shared_ptr<HttpEventStream> source_;
  net::steady_timer poll_timer_;
  std::array<char, 256> hangup_buffer_{};
  bool streaming_ = false, polling_ = false, wake_pending_ = false,
       hung_up_ = false;
};

absl::Status HttpServer::Impl::Start() {
  beast::error_code ec;
  const net::ip::address address = net::ip::make_address(options_.host, ec);
  if (ec) {
    return absl::InvalidArgumentError(absl::StrCat(
        "cannot listen on '", options_.host, "': not an IP address"));
  }
  tcp::endpoint endpoint(address, static_cast<uint16_t>(options_.port));
  acceptor_.emplace(ioc_);
  acceptor_->open(endpoint.protocol(), ec);
  // SO_REUSEADDR (restart without TIME_WAIT trouble) but never
  // SO_REUSEPORT: a second server on a port in use must fail, not share.
  if (!ec) acceptor_->set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) acceptor_->bind(endpoint, ec);
  if (!ec) acceptor_->listen(net::socket_base::max_listen_connections, ec);
  if (ec) {
    acceptor_.reset();
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", options_.host, ":", options_.port,
                     " (in use, or no permission)"));
  }
  port_ = acceptor_->local_endpoint().port();
  Accept();
  for (int i = 0; i < options_.io_threads; ++i) {
    io_threads_.emplace_back([this] { ioc_.run(); });
  }
  return absl::OkStatus();
}

bool HttpServer::Impl::Admit(const std::string& address) {
  absl::MutexLock lock(&mu_);
  int& here = per_address_[address];
  if (open_ >= options_.max_connections ||
      here >= options_.max_connections_per_address) {
    if (here == 0) per_address_.erase(address);
    return false;
  }
  ++here;
  ++open_;
  return true;
}

void HttpServer::Impl::Accept() {
  acceptor_->async_accept(net::make_strand(ioc_), [this](beast::error_code ec,
                                                         tcp::socket socket) {
    if (ec == net::error::operation_aborted || !acceptor_->is_open()) {
      return;
    }
    if (!ec) {
      beast::error_code peer_ec;
      const tcp::endpoint peer = socket.remote_endpoint(peer_ec);
      const std::string address = peer_ec ? "?" : peer.address().to_string();
      socket.set_option(tcp::no_delay(true), peer_ec);
      if (Admit(address)) {
        std::make_shared<Session>(*this, std::move(socket), address)->Begin();
      } else {
        ++refused_;
        // Best effort, never waiting for the client.
        static constexpr char kBusy[] =
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: "
            "application/json\r\nContent-Length: 88\r\nConnection: "
            "close\r\nRetry-After: 1\r\n\r\n"
            "{\"code\":\"unavailable\",\"message\":\"too many connections "
            "from this address\",\"details\":{}}";
        socket.non_blocking(true, peer_ec);
        socket.write_some(net::buffer(kBusy, sizeof(kBusy) - 1), peer_ec);
        socket.close(peer_ec);
      }
    } else if (ec == net::error::no_descriptors ||
               ec == boost::system::errc::too_many_files_open_in_system) {
      // Out of descriptors: accepting again at once would spin. Wait for
      // connections to close.
      ++refused_;
      auto pause = std::make_shared<net::steady_timer>(
          ioc_, std::chrono::milliseconds(100));
      pause->async_wait([this, pause](beast::error_code) {
        if (acceptor_->is_open()) Accept();
      });
      return;
    }
    Accept();
  });
}

void HttpServer::Impl::Stop() {
  if (stopped_) return;
  stopped_ = true;
  if (acceptor_.has_value()) {
    net::post(ioc_, [this] {
      beast::error_code ec;
      acceptor_->close(ec);
    });
  }
  ioc_.stop();
  for (std::thread& t : io_threads_) {
    if (t.joinable()) t.join();
  }
  workers_.Stop();
}

HttpServer::HttpServer(HttpHandler& handler, HttpServerOptions options)
    : impl_(std::make_unique<Impl>(handler, std::move(options))) {}

HttpServer::~HttpServer() { Stop(); }

absl::Status HttpServer::Start() { return impl_->Start(); }

void HttpServer::Stop() { impl_->Stop(); }

int HttpServer::port() const { return impl_->port_; }

HttpServerStats HttpServer::stats() const {
  HttpServerStats s;
  {
    absl::MutexLock lock(&impl_->mu_);
    s.connections_open = impl_->open_;
  }
  s.connections_refused = impl_->refused_;
  s.timeouts = impl_->timeouts_;
  s.malformed = impl_->malformed_;
  s.overloaded = impl_->overloaded_;
  s.streams_open = impl_->streams_;
  return s;
}

}  // namespace idsync

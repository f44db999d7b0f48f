#include "common/redis/redis_client.h"

#include <charconv>
#include <span>
#include <string_view>

#include "common/util/net.h"

#include <arpa/inet.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <strings.h>

#include <algorithm>
#include <cstdint>
#include <limits>

#include "common/obs/log.h"

namespace redisx {

namespace {

// privdata of the handshake commands; user commands have ids >= kFirstUserId.
constexpr uint64_t kStepAuth = 1;
constexpr uint64_t kStepSelect = 2;
constexpr uint64_t kStepPing = 3;
constexpr uint64_t kFirstUserId = 16;

void* idToPrivdata(uint64_t id) { return reinterpret_cast<void*>(static_cast<uintptr_t>(id)); }

bool isNumericHost(const std::string& host) {
  in_addr a4{};
  in6_addr a6{};
  return inet_pton(AF_INET, host.c_str(), &a4) == 1 || inet_pton(AF_INET6, host.c_str(), &a6) == 1;
}

// Commands after which the server pushes messages instead of answering one reply per command:
// hiredis' reply matching (and our timeouts) would no longer hold.
bool changesReplyProtocol(std::string_view name) {
  static constexpr std::string_view kNames[] = {"SUBSCRIBE", "PSUBSCRIBE", "SSUBSCRIBE", "MONITOR"};
  for (std::string_view n : kNames) {
    if (name.size() == n.size() && strncasecmp(name.data(), n.data(), n.size()) == 0) {
      return true;
    }
  }
  return false;
}

void appendRespNumber(std::string& out, char prefix, size_t n) {
  char buf[24];
  buf[0] = prefix;
  char* end = std::to_chars(buf + 1, buf + sizeof buf - 2, n).ptr;
  *end++ = '\r';
  *end++ = '\n';
  out.append(buf, static_cast<size_t>(end - buf));
}

// Serializes a command in RESP (an array of bulk strings) into `out`, replacing its contents.
void formatRespCommand(std::span<const std::string_view> args, std::string& out) {
  out.clear();
  appendRespNumber(out, '*', args.size());
  for (std::string_view a : args) {
    appendRespNumber(out, '$', a.size());
    out.append(a);
    out.append("\r\n");
  }
}



std::string contextError(const redisAsyncContext* ac, const char* fallback) {
  if (ac != nullptr && ac->c.err != 0 && ac->c.errstr[0] != '\0') {
    return ac->c.errstr;
  }
  return fallback;
}

// ---- hiredis <-> libuv glue ------------------------------------------------------------------
// The same five hooks as hiredis' <hiredis/adapters/libuv.h> (redisLibuvAttach), with two fixes
// for the 0.14.1 version Debian 12 ships:
//  - libuv reports POLLERR (a refused non-blocking connect, a reset connection) as status
//    UV_EBADF and stops the handle; the stock adapter returns without telling hiredis, so a
//    refused connect is only noticed at the connect timeout and a reset connection not at all
//    (commands just time out). Here hiredis reads the socket, finds the error and disconnects.
//  - the stock attach leaks its state and leaves half-installed hooks when uv_poll_init fails.
//  - writes: hiredis asks for "writable" after every command; polling for it costs two
//    epoll_ctl calls and an extra loop turn per command. On a connected socket the queued
//    commands are instead written once just before the loop polls (a prepare handle), which
//    batches every command of that turn into one write; only a short write polls for writable.
struct UvRedisEvents {
  uv_poll_t handle{};
  uv_prepare_t flush{};
  redisAsyncContext* context = nullptr;
  int events = 0;
  int openHandles = 2;
  bool flushing = false;
  bool flushScheduled = false;
};

void uvRedisPoll(uv_poll_t* handle, int status, int events) {
  auto* ev = static_cast<UvRedisEvents*>(handle->data);
  if (ev->context == nullptr) {
    return;
  }
  if (status < 0) {
    // Reading surfaces the socket error: while connecting, hiredis checks SO_ERROR and calls the
    // connect callback with an error; once connected, read() fails and hiredis disconnects. On
    // a spurious error it re-arms the watch itself.
    redisAsyncHandleRead(ev->context);
    return;
  }
  if ((events & UV_READABLE) != 0) {
    redisAsyncHandleRead(ev->context);
  }
  // The read may have freed the context (cleanup clears ev->context).
  if (ev->context != nullptr && (events & UV_WRITABLE) != 0) {
    redisAsyncHandleWrite(ev->context);
  }
}

void uvRedisUpdate(UvRedisEvents* ev, int add, int remove) {
  const int next = (ev->events | add) & ~remove;
  if (next == ev->events) {
    return;  // no epoll_ctl for a watch that does not change
  }
  ev->events = next;
  if (ev->events != 0) {
    uv_poll_start(&ev->handle, ev->events, &uvRedisPoll);
  } else {
    uv_poll_stop(&ev->handle);
  }
}

void uvRedisFlush(uv_prepare_t* p) {
  auto* ev = static_cast<UvRedisEvents*>(p->data);
  uv_prepare_stop(p);
  ev->flushScheduled = false;
  if (ev->context == nullptr) {
    return;
  }
  ev->flushing = true;  // a short write asks for writable again: then it is really polled
  redisAsyncHandleWrite(ev->context);
  ev->flushing = false;
}

void uvRedisAddRead(void* data) { uvRedisUpdate(static_cast<UvRedisEvents*>(data), UV_READABLE, 0); }
void uvRedisDelRead(void* data) { uvRedisUpdate(static_cast<UvRedisEvents*>(data), 0, UV_READABLE); }
void uvRedisAddWrite(void* data) {
  auto* ev = static_cast<UvRedisEvents*>(data);
  // While connecting, "writable" is how the connect's completion is seen: poll for it.
  if (!ev->flushing && ev->context != nullptr && (ev->context->c.flags & REDIS_CONNECTED) != 0) {
    if (!ev->flushScheduled) {
      ev->flushScheduled = true;
      uv_prepare_start(&ev->flush, &uvRedisFlush);
    }
    return;
  }
  uvRedisUpdate(ev, UV_WRITABLE, 0);
}
void uvRedisDelWrite(void* data) { uvRedisUpdate(static_cast<UvRedisEvents*>(data), 0, UV_WRITABLE); }

// hiredis calls this while freeing the context, before it closes the socket; uv_close stops the
// watches at once and the memory goes when both handles' close callbacks ran.
void uvRedisCleanup(void* data) {
  auto* ev = static_cast<UvRedisEvents*>(data);
  ev->context = nullptr;
  auto closed = [](uv_handle_t* h) {
    auto* e = static_cast<UvRedisEvents*>(h->data);
    if (--e->openHandles == 0) {
      delete e;
    }
  };
  uv_close(reinterpret_cast<uv_handle_t*>(&ev->handle), closed);
  uv_close(reinterpret_cast<uv_handle_t*>(&ev->flush), closed);
}

bool attachToLoop(redisAsyncContext* ac, uv_loop_t* loop) {
  if (ac->ev.data != nullptr) {
    return false;
  }
  auto* ev = new UvRedisEvents;
  if (uv_poll_init(loop, &ev->handle, ac->c.fd) != 0) {
    delete ev;
    return false;
  }
  uv_prepare_init(loop, &ev->flush);
  ev->flush.data = ev;
  ev->handle.data = ev;
  ev->context = ac;
  ac->ev.data = ev;
  ac->ev.addRead = &uvRedisAddRead;
  ac->ev.delRead = &uvRedisDelRead;
  ac->ev.addWrite = &uvRedisAddWrite;
  ac->ev.delWrite = &uvRedisDelWrite;
  ac->ev.cleanup = &uvRedisCleanup;
  return true;
}

void initTimer(uv_loop_t* loop, uvx::OwnedHandle<uv_timer_t>& timer, void* owner) {
  uv_timer_init(loop, timer.get());
  timer.markInitialized();
  timer.get()->data = owner;
}

}  // namespace

RedisClient::RedisClient(uv_loop_t* loop, RedisOptions options)
    : loop_(loop),
      options_(std::move(options)),
      nextId_(kFirstUserId),
      rng_(static_cast<std::minstd_rand::result_type>(uv_hrtime() ^ reinterpret_cast<uintptr_t>(this))),
      alive_(std::make_shared<bool>(true)) {
  initTimer(loop_, connectTimer_, this);
  initTimer(loop_, deadlineTimer_, this);
  initTimer(loop_, deferTimer_, this);
}

RedisClient::~RedisClient() {
  *alive_ = false;
  cancelResolve();
  // Our hiredis callbacks see data == nullptr from here on, so freeing runs no code of ours; the
  // adapter closes its poll handle and the timers close through their OwnedHandle.
  dropContext();
}

const char* RedisClient::stateName(State s) {
  switch (s) {
    case State::Disconnected:
      return "disconnected";
    case State::Connecting:
      return "connecting";
    case State::Ready:
      return "ready";
    case State::Closed:
      return "closed";
  }
  return "unknown";
}

uint64_t RedisClient::now() const { return uv_now(loop_); }

std::chrono::milliseconds RedisClient::stallTimeout(std::chrono::milliseconds commandTimeout) const {
  std::chrono::milliseconds base = options_.stallTimeout;
  if (base.count() <= 0) {
    base = std::max(std::chrono::milliseconds(1000), 10 * options_.commandTimeout);
  }
  return std::max(base, commandTimeout);
}

bool RedisClient::start(std::string* error) {
  if (state_ == State::Closed) {
    if (error != nullptr) {
      *error = "redis client closed";
    }
    return false;
  }
  if (started_) {
    if (error != nullptr) {
      *error = urlError_.empty() ? "" : lastError_;
    }
    return urlError_.empty();
  }
  started_ = true;
  urlError_ = parseRedisUrl(options_.url, endpoint_);
  if (!urlError_.empty()) {
    lastError_ = "redis.url: " + urlError_;
    if (error != nullptr) {
      *error = lastError_;
    }
    return false;
  }
  startConnect();
  return true;
}

void RedisClient::startConnect() {
  state_ = State::Connecting;
  connectError_.clear();
  addresses_.clear();
  addressIndex_ = 0;
  uv_timer_start(connectTimer_.get(), &RedisClient::onConnectTimerThunk,
                 static_cast<uint64_t>(options_.connectTimeout.count()), 0);
  if (!endpoint_.unixPath.empty()) {
    connectTo(endpoint_.unixPath);
    return;
  }
  if (isNumericHost(endpoint_.host)) {
    connectTo(endpoint_.host);
    return;
  }
  // hiredis resolves names with a blocking getaddrinfo(); do it on the libuv thread pool instead
  // and hand hiredis the address.
  auto* resolve = new Resolve;
  resolve->owner = this;
  resolve->req.data = resolve;
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  int rc = uv_getaddrinfo(loop_, &resolve->req, &RedisClient::onResolvedThunk, endpoint_.host.c_str(), nullptr, &hints);
  if (rc != 0) {
    delete resolve;
    connectionFailed("resolve " + endpoint_.host + ": " + uv_strerror(rc));
    return;
  }
  resolve_ = resolve;
}

void RedisClient::onResolvedThunk(uv_getaddrinfo_t* req, int status, addrinfo* res) {
  auto* resolve = static_cast<Resolve*>(req->data);
  RedisClient* self = resolve->owner;
  std::vector<std::string> addresses = status == 0 ? util::addressStrings(res) : std::vector<std::string>{};
  if (res != nullptr) {
    uv_freeaddrinfo(res);
  }
  delete resolve;
  if (self == nullptr) {
    return;  // cancelled: the client gave up on this attempt or is gone
  }
  self->resolve_ = nullptr;
  if (addresses.empty()) {
    self->connectionFailed("resolve " + self->endpoint_.host + ": " +
                           (status != 0 ? uv_strerror(status) : "no IPv4/IPv6 address"));
    return;
  }
  // In getaddrinfo's order (RFC 6724); "localhost" often gives ::1 first while a server listens on
  // 127.0.0.1 only, so a refused address moves on to the next.
  self->addresses_ = std::move(addresses);
  self->addressIndex_ = 0;
  self->connectTo(self->addresses_[0]);
}

bool RedisClient::connectNextAddress() {
  if (state_ != State::Connecting || addressIndex_ + 1 >= addresses_.size()) {
    return false;
  }
  ++addressIndex_;
  connectTo(addresses_[addressIndex_]);
  return true;
}

void RedisClient::cancelResolve() {
  if (resolve_ == nullptr) {
    return;
  }
  resolve_->owner = nullptr;
  uv_cancel(reinterpret_cast<uv_req_t*>(&resolve_->req));
  resolve_ = nullptr;
}

void RedisClient::connectTo(const std::string& address) {
  // The socket is non-blocking and connect() returns EINPROGRESS (or fails at once, e.g. refused
  // on loopback); completion is reported through onConnectThunk.
  redisAsyncContext* ac = endpoint_.unixPath.empty() ? redisAsyncConnect(address.c_str(), endpoint_.port)
                                                     : redisAsyncConnectUnix(address.c_str());
  if (ac == nullptr) {
    connectionFailed("connect to " + endpoint_.describe() + ": out of memory");
    return;
  }
  if (ac->err != 0) {
    std::string why = contextError(ac, "connect failed");
    redisAsyncFree(ac);
    if (!connectNextAddress()) {
      connectionFailed("connect to " + endpoint_.describe() + ": " + why);
    }
    return;
  }
  if (!attachToLoop(ac, loop_)) {
    redisAsyncFree(ac);
    connectionFailed("connect to " + endpoint_.describe() + ": cannot watch the socket");
    return;
  }
  ac->data = this;
  redisAsyncSetConnectCallback(ac, &RedisClient::onConnectThunk);
  redisAsyncSetDisconnectCallback(ac, &RedisClient::onDisconnectThunk);
  context_ = ac;
}

void RedisClient::onConnectThunk(const redisAsyncContext* ac, int status) {
  auto* self = static_cast<RedisClient*>(ac->data);
  if (self == nullptr) {
    return;
  }
  if (status != REDIS_OK) {
    // hiredis frees the context as soon as we return.
    std::string why = contextError(ac, "connect failed");
    const_cast<redisAsyncContext*>(ac)->data = nullptr;
    self->context_ = nullptr;
    if (!self->connectNextAddress()) {
      self->connectionFailed("connect to " + self->endpoint_.describe() + ": " + why);
    }
    return;
  }
  self->onConnected();
}

void RedisClient::onConnected() {
  // Runs inside hiredis' connect callback, which hiredis 0.14 does not mark as "in callback":
  // freeing the context here would pull it out from under hiredis, so failures go through the
  // connect timer (0 ms) instead.
  std::vector<std::pair<uint64_t, std::vector<std::string>>> steps;
  if (!endpoint_.password.empty()) {
    std::vector<std::string> auth{"AUTH"};
    if (!endpoint_.username.empty()) {
      auth.push_back(endpoint_.username);
    }
    auth.push_back(endpoint_.password);
    steps.emplace_back(kStepAuth, std::move(auth));
  }
  if (endpoint_.db != 0) {
    steps.emplace_back(kStepSelect, std::vector<std::string>{"SELECT", std::to_string(endpoint_.db)});
  }
  // Ready means the server answered, not merely that a kernel accepted the TCP connection (a
  // stopped server's kernel still does).
  steps.emplace_back(kStepPing, std::vector<std::string>{"PING"});
  handshakeSteps_ = 0;
  for (auto& [step, args] : steps) {
    const std::vector<std::string_view> views(args.begin(), args.end());
    formatRespCommand(views, scratch_);
    if (!writeCommand(step, scratch_, options_.connectTimeout)) {
      connectError_ = "handshake with " + endpoint_.describe() + ": cannot write " + args[0];
      uv_timer_start(connectTimer_.get(), &RedisClient::onConnectTimerThunk, 0, 0);
      return;
    }
    ++handshakeSteps_;
  }
}

void RedisClient::onHandshakeReply(uint64_t step, redisReply* reply) {
  if (reply->type == REDIS_REPLY_ERROR) {
    std::string what = step == kStepAuth     ? "AUTH"
                       : step == kStepSelect ? "SELECT " + std::to_string(endpoint_.db)
                                             : "PING";
    std::string why(reply->str, reply->len);
    dropContext();  // we are inside a reply callback: hiredis frees it once we return
    connectionFailed(what + " failed on " + endpoint_.describe() + ": " + why);
    return;
  }
  if (handshakeSteps_ > 0 && --handshakeSteps_ == 0) {
    becomeReady();
  }
}

void RedisClient::becomeReady() {
  state_ = State::Ready;
  ++connectionsEstablished_;
  failedAttempts_ = 0;
  uv_timer_stop(connectTimer_.get());
  if (everFailed_) {
    obs::info("redis connection restored", obs::LogFields().str("redis", endpoint_.describe()));
  }
  everFailed_ = false;
  lastError_.clear();
  // Send what was queued while connecting, in issue order.
  for (auto& [id, p] : pending_) {
    if (p.sent) {
      continue;
    }
    if (!writeCommand(id, p.resp, p.timeout)) {
      dropContext();
      connectionFailed("write to " + endpoint_.describe() + " failed");
      return;
    }
    p.sent = true;
    p.resp.clear();
    p.resp.shrink_to_fit();
  }
  armDeadlineTimer();
}

bool RedisClient::writeCommand(uint64_t id, const std::string& resp, std::chrono::milliseconds timeout) {
  if (context_ == nullptr) {
    return false;
  }
  // Formatted by us (formatRespCommand): hiredis' own argv formatter was most of a command's cost.
  if (redisAsyncFormattedCommand(context_, &RedisClient::onReplyThunk, idToPrivdata(id), resp.data(), resp.size()) !=
      REDIS_OK) {
    return false;
  }
  wireStallDeadlines_.push_back(now() + static_cast<uint64_t>(stallTimeout(timeout).count()));
  return true;
}

void RedisClient::onReplyThunk(redisAsyncContext* ac, void* reply, void* privdata) {
  auto* self = static_cast<RedisClient*>(ac->data);
  if (self == nullptr) {
    return;  // a context we dropped, being freed
  }
  self->onReply(ac, static_cast<redisReply*>(reply), static_cast<uint64_t>(reinterpret_cast<uintptr_t>(privdata)));
}

void RedisClient::onReply(redisAsyncContext* ac, redisReply* reply, uint64_t id) {
  if (reply == nullptr) {
    // hiredis 0.14 passes a null reply only while freeing the context (connection error or EOF),
    // before it calls the disconnect callback.
    contextGone(ac, "connection to " + endpoint_.describe() + " lost: " + contextError(ac, "closed"));
    return;
  }
  if (!wireStallDeadlines_.empty()) {
    wireStallDeadlines_.pop_front();
  }
  if (id < kFirstUserId) {
    armDeadlineTimer();
    onHandshakeReply(id, reply);
    return;
  }
  auto it = pending_.find(id);
  if (it == pending_.end()) {
    armDeadlineTimer();
    return;  // already timed out: the late reply is dropped
  }
  Callback cb = std::move(it->second.cb);
  removeDeadline(id, it->second.deadlineMs);
  pending_.erase(it);
  armDeadlineTimer();
  RedisResult result =
      reply->type == REDIS_REPLY_ERROR
          ? RedisResult::failure(RedisErrorKind::ServerError, std::string(reply->str, reply->len), true)
          : RedisResult::success(RedisReply::fromHiredis(reply));
  // Last statement: the callback may destroy this client.
  cb(std::move(result));
}

void RedisClient::onDisconnectThunk(const redisAsyncContext* ac, int /*status*/) {
  auto* self = static_cast<RedisClient*>(ac->data);
  if (self == nullptr) {
    return;
  }
  self->contextGone(
      ac, "connection to " + self->endpoint_.describe() + " lost: " + contextError(ac, "closed by the server"));
}

void RedisClient::contextGone(const redisAsyncContext* ac, const std::string& reason) {
  const_cast<redisAsyncContext*>(ac)->data = nullptr;
  if (ac != context_) {
    return;
  }
  context_ = nullptr;
  connectionFailed(reason);
}

void RedisClient::dropContext() {
  if (context_ == nullptr) {
    return;
  }
  redisAsyncContext* ac = context_;
  context_ = nullptr;
  ac->data = nullptr;
  wireStallDeadlines_.clear();
  // Immediate outside hiredis callbacks; from inside a reply callback hiredis defers it until the
  // callback returns. Either way the pending hiredis callbacks see data == nullptr.
  redisAsyncFree(ac);
}

void RedisClient::connectionFailed(const std::string& reason) {
  if (state_ == State::Closed) {
    return;
  }
  bool wasReady = state_ == State::Ready;
  wireStallDeadlines_.clear();
  handshakeSteps_ = 0;
  state_ = State::Disconnected;
  lastError_ = reason;
  uv_timer_stop(connectTimer_.get());
  if (!everFailed_) {
    // Once per outage, not once per reconnect attempt.
    obs::warn(wasReady ? "redis connection lost" : "redis unavailable",
              obs::LogFields().str("redis", endpoint_.describe()).str("error", reason));
    everFailed_ = true;
  }
  failAllPending(RedisErrorKind::Disconnected, "redis " + reason);
  scheduleReconnect();
}

void RedisClient::scheduleReconnect() {
  if (state_ == State::Closed || !urlError_.empty()) {
    return;
  }
  uint64_t base = static_cast<uint64_t>(std::max<int64_t>(1, options_.reconnectBackoffBase.count()));
  uint64_t max = static_cast<uint64_t>(std::max<int64_t>(1, options_.reconnectBackoffMax.count()));
  int shift = std::min(failedAttempts_, 20);
  uint64_t cap = std::min(max, base << shift);
  ++failedAttempts_;
  uint64_t half = cap / 2;
  uint64_t delay = half + static_cast<uint64_t>(rng_()) % (cap - half + 1);
  uv_timer_start(connectTimer_.get(), &RedisClient::onConnectTimerThunk, delay, 0);
}

void RedisClient::onConnectTimerThunk(uv_timer_t* t) {
  auto* self = static_cast<RedisClient*>(t->data);
  if (self == nullptr) {
    return;
  }
  if (self->state_ == State::Disconnected) {
    self->startConnect();
  } else if (self->state_ == State::Connecting) {
    std::string reason = self->connectError_;
    if (reason.empty()) {
      reason = "connect to " + self->endpoint_.describe() + " timed out after " +
               std::to_string(self->options_.connectTimeout.count()) + "ms";
    }
    self->cancelResolve();
    self->dropContext();
    self->connectionFailed(reason);
  }
}

void RedisClient::command(std::vector<std::string> args, Callback cb) {
  command(std::move(args), options_.commandTimeout, std::move(cb));
}

void RedisClient::command(std::vector<std::string> args, std::chrono::milliseconds timeout, Callback cb) {
  std::string_view inlineViews[8];
  std::vector<std::string_view> manyViews;
  std::span<const std::string_view> views;
  if (args.size() <= std::size(inlineViews)) {
    std::copy(args.begin(), args.end(), inlineViews);
    views = std::span<const std::string_view>(inlineViews, args.size());
  } else {
    manyViews.assign(args.begin(), args.end());
    views = manyViews;
  }
  commandViews(views, timeout, std::move(cb));
}

void RedisClient::commandViews(std::span<const std::string_view> args, std::chrono::milliseconds timeout, Callback cb) {
  if (state_ == State::Closed) {
    cb(RedisResult::failure(RedisErrorKind::Disconnected, "redis client closed", false));
    return;
  }
  if (args.empty()) {
    defer(std::move(cb), RedisResult::failure(RedisErrorKind::InvalidCommand, "empty redis command", false));
    return;
  }
  if (changesReplyProtocol(args[0])) {
    defer(std::move(cb), RedisResult::failure(RedisErrorKind::InvalidCommand,
                                              std::string(args[0]) + " is not supported on a shared RedisClient", false));
    return;
  }
  if (state_ == State::Disconnected) {
    std::string why =
        !lastError_.empty() ? "redis unavailable: " + lastError_ : "redis client not started (call start())";
    defer(std::move(cb), RedisResult::failure(RedisErrorKind::Disconnected, why, false));
    return;
  }
  if (pending_.size() >= options_.maxPending || wireStallDeadlines_.size() >= options_.maxPending) {
    defer(std::move(cb),
          RedisResult::failure(RedisErrorKind::Overloaded,
                               "too many redis commands pending (" + std::to_string(options_.maxPending) + ")", false));
    return;
  }
  uint64_t id = nextId_++;
  Pending p;
  p.timeout = std::max(timeout, std::chrono::milliseconds(1));
  p.deadlineMs = now() + static_cast<uint64_t>(p.timeout.count());
  if (state_ == State::Ready) {
    formatRespCommand(args, scratch_);  // hiredis copies it into its output buffer
    if (!writeCommand(id, scratch_, p.timeout)) {
      defer(std::move(cb), RedisResult::failure(RedisErrorKind::Disconnected,
                                                "write to redis " + endpoint_.describe() + " failed", false));
      return;
    }
    p.sent = true;
  } else {
    formatRespCommand(args, p.resp);  // Connecting: sent by becomeReady()
  }
  p.cb = std::move(cb);
  deadlines_.emplace(p.deadlineMs, id);
  pending_.emplace(id, std::move(p));
  armDeadlineTimer();
}

void RedisClient::removeDeadline(uint64_t id, uint64_t deadlineMs) { deadlines_.erase({deadlineMs, id}); }

void RedisClient::armDeadlineTimer() {
  if (state_ == State::Closed) {
    return;
  }
  uint64_t next = std::numeric_limits<uint64_t>::max();
  if (!deadlines_.empty()) {
    next = deadlines_.begin()->first;
  }
  if (state_ == State::Ready && !wireStallDeadlines_.empty()) {
    next = std::min(next, wireStallDeadlines_.front());
  }
  const bool armed = uv_is_active(deadlineTimer_.base()) != 0;
  if (next == std::numeric_limits<uint64_t>::max()) {
    if (armed) {
      uv_timer_stop(deadlineTimer_.get());
    }
    return;
  }
  // Armed no later than needed already: an early wake-up re-arms (onDeadlines), and skipping the
  // restart saves a timer-heap operation on every command.
  if (armed && armedForMs_ <= next) {
    return;
  }
  uint64_t t = now();
  armedForMs_ = std::max(next, t);
  uv_timer_start(deadlineTimer_.get(), &RedisClient::onDeadlineTimerThunk, next > t ? next - t : 0, 0);
}

void RedisClient::onDeadlineTimerThunk(uv_timer_t* t) {
  auto* self = static_cast<RedisClient*>(t->data);
  if (self != nullptr) {
    self->onDeadlines();
  }
}

void RedisClient::onDeadlines() {
  uint64_t t = now();
  std::vector<std::pair<Callback, RedisResult>> expired;
  while (!deadlines_.empty() && deadlines_.begin()->first <= t) {
    uint64_t id = deadlines_.begin()->second;
    deadlines_.erase(deadlines_.begin());
    auto it = pending_.find(id);
    if (it == pending_.end()) {
      continue;
    }
    std::string timeout = std::to_string(it->second.timeout.count()) + "ms";
    std::string message = it->second.sent ? "redis command timed out after " + timeout
                                          : "redis " + endpoint_.describe() +
                                                " not connected within the command timeout (" + timeout + ")";
    expired.emplace_back(std::move(it->second.cb),
                         RedisResult::failure(RedisErrorKind::Timeout, std::move(message), it->second.sent));
    pending_.erase(it);
  }
  if (state_ == State::Ready && !wireStallDeadlines_.empty() && wireStallDeadlines_.front() <= t) {
    dropContext();
    connectionFailed("no reply from " + endpoint_.describe() + " for " +
                     std::to_string(stallTimeout(options_.commandTimeout).count()) + "ms; reconnecting");
  }
  armDeadlineTimer();
  auto alive = alive_;
  for (auto& [cb, result] : expired) {
    if (!*alive) {
      return;
    }
    cb(std::move(result));
  }
}

void RedisClient::failAllPending(RedisErrorKind kind, const std::string& reason) {
  std::map<uint64_t, Pending> failed;
  failed.swap(pending_);
  deadlines_.clear();
  for (auto& [id, p] : failed) {
    defer(std::move(p.cb), RedisResult::failure(kind, reason, p.sent));
  }
  armDeadlineTimer();
}

void RedisClient::defer(Callback cb, RedisResult result) {
  deferred_.emplace_back(std::move(cb), std::move(result));
  if (deferTimer_.isOpen()) {
    uv_timer_start(deferTimer_.get(), &RedisClient::onDeferTimerThunk, 0, 0);
  }
}

void RedisClient::onDeferTimerThunk(uv_timer_t* t) {
  auto* self = static_cast<RedisClient*>(t->data);
  if (self == nullptr) {
    return;
  }
  std::vector<std::pair<Callback, RedisResult>> ready;
  ready.swap(self->deferred_);
  auto alive = self->alive_;
  for (auto& [cb, result] : ready) {
    if (!*alive) {
      return;
    }
    cb(std::move(result));
  }
}

void RedisClient::close() {
  if (state_ == State::Closed) {
    return;
  }
  state_ = State::Closed;
  lastError_ = "redis client closed";
  cancelResolve();
  dropContext();
  wireStallDeadlines_.clear();
  connectTimer_.close();
  deadlineTimer_.close();
  deferTimer_.close();
  std::vector<std::pair<Callback, RedisResult>> toRun;
  toRun.swap(deferred_);
  for (auto& [id, p] : pending_) {
    toRun.emplace_back(std::move(p.cb),
                       RedisResult::failure(RedisErrorKind::Disconnected, "redis client closed", p.sent));
  }
  pending_.clear();
  deadlines_.clear();
  auto alive = alive_;
  for (auto& [cb, result] : toRun) {
    if (!*alive) {
      return;
    }
    cb(std::move(result));
  }
}

}  // namespace redisx

#include "common/http/parser.h"

#include <algorithm>
#include <array>
#include <bit>
#include <cstring>

namespace http {
namespace {

Parser* self(llhttp_t* p) { return static_cast<Parser*>(p->data); }

// RFC 9110 token characters (header field names).
constexpr std::array<bool, 256> kTokenChar = [] {
  std::array<bool, 256> t{};
  for (int c = 0; c < 256; ++c) {
    t[static_cast<size_t>(c)] = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
  }
  for (char c : std::string_view("!#$%&'*+-.^_`|~")) {
    t[static_cast<unsigned char>(c)] = true;
  }
  return t;
}();

bool isToken(std::string_view s) {
  for (char c : s) {
    if (!kTokenChar[static_cast<unsigned char>(c)]) {
      return false;
    }
  }
  return true;
}

// Index of the first CR, LF or NUL in data[from, limit), or `limit`: the rest of a head line in
// one pass, eight bytes at a time (a byte-wise loop was the parser's largest cost after llhttp).
size_t skipOrdinaryBytes(const char* data, size_t from, size_t limit) {
  static_assert(std::endian::native == std::endian::little, "the eight-byte scan assumes little endian");
  constexpr uint64_t kOnes = 0x0101010101010101ULL;
  constexpr uint64_t kHighs = 0x8080808080808080ULL;
  size_t i = from;
  for (; i + 8 <= limit; i += 8) {
    uint64_t w;
    std::memcpy(&w, data + i, 8);
    const uint64_t cr = w ^ (kOnes * '\r');
    const uint64_t lf = w ^ (kOnes * '\n');
    // A byte of x is zero iff (x - 1) borrows into its high bit while x's high bit is clear.
    const uint64_t zero = ((w - kOnes) & ~w) | ((cr - kOnes) & ~cr) | ((lf - kOnes) & ~lf);
    if (const uint64_t hits = zero & kHighs; hits != 0) {
      // A borrow can only mark bytes above a real match, so the lowest mark is exact (little
      // endian: the lowest address).
      return i + static_cast<size_t>(__builtin_ctzll(hits) >> 3);
    }
  }
  while (i < limit && data[i] != '\r' && data[i] != '\n' && data[i] != '\0') {
    ++i;
  }
  return i;
}

}  // namespace

void MessageHead::reset() {
  method = HTTP_GET;
  target.clear();
  status = 0;
  reason.clear();
  versionMajor = 1;
  versionMinor = 1;
  headers.clear();
  keepAlive = true;
  body = BodyKind::None;
  contentLength = 0;
  expectContinue = false;
}

const llhttp_settings_t& Parser::settings() {
  // One table for every parser: llhttp only reads it, and a copy per connection cost 184 bytes of
  // each idle connection's memory.
  static const llhttp_settings_t table = [] {
    llhttp_settings_t t;
    llhttp_settings_init(&t);
    t.on_message_begin = &Parser::onMessageBegin;
    t.on_url = &Parser::onUrl;
    t.on_status = &Parser::onStatus;
    t.on_header_field = &Parser::onHeaderField;
    t.on_header_value = &Parser::onHeaderValue;
    t.on_header_field_complete = [](llhttp_t* p) {
      self(p)->inValue_ = true;
      return 0;
    };
    t.on_header_value_complete = &Parser::onHeaderValueComplete;
    t.on_headers_complete = &Parser::onHeadersComplete;
    t.on_body = &Parser::onBody;
    t.on_message_complete = &Parser::onMessageCompleteCb;
    t.on_chunk_header = &Parser::onChunkHeader;
    return t;
  }();
  return table;
}

Parser::Parser(llhttp_type_t type, Sink* sink, size_t maxHeadBytes) : sink_(sink), maxHeadBytes_(maxHeadBytes) {
  // llhttp_init keeps the pointer; the settings are never written through it.
  llhttp_init(&parser_, type, const_cast<llhttp_settings_t*>(&settings()));
  parser_.data = this;
}

void Parser::rebind(Sink* sink, size_t maxHeadBytes) {
  const llhttp_type_t type = static_cast<llhttp_type_t>(llhttp_get_type(&parser_));
  sink_ = sink;
  maxHeadBytes_ = maxHeadBytes;
  llhttp_init(&parser_, type, const_cast<llhttp_settings_t*>(&settings()));
  parser_.data = this;
  currentHeader_ = nullptr;
  inValue_ = inMessage_ = headDone_ = stopped_ = nextResponseNoBody_ = sawTrailers_ = false;
  headBytes_ = lineLength_ = lines_ = 0;
  sawCR_ = false;
  feedEnd_ = nullptr;
  chunkRemaining_ = 0;
  inChunkData_ = false;
  pendingCrlf_ = 0;
  chunkLinePaused_ = sizeLineOpen_ = inTrailers_ = false;
  std::memset(tail_, 0, sizeof tail_);
  errorStatus_ = 400;
  errorReason_.clear();
}

Parser::Status Parser::fail(int status, std::string reason) {
  errorStatus_ = status;
  errorReason_ = std::move(reason);
  return Status::Error;
}

long Parser::scanHead(const char* data, size_t len) {
  // Bytes this message may still add to its head before it is too large.
  const size_t limit = std::min(len, maxHeadBytes_ - std::min(headBytes_, maxHeadBytes_));
  size_t i = 0;
  while (i < limit) {
    const char c = data[i];
    if (sawCR_) {
      if (c != '\n') {
        fail(400, "bare CR in message head");
        return -1;
      }
      sawCR_ = false;
      ++i;
      if (lineLength_ == 0 && lines_ > 0) {
        headBytes_ += i;
        inTrailers_ = false;
        return static_cast<long>(i);  // blank line: end of head (or of the trailer section)
      }
      if (lineLength_ > 0) {
        ++lines_;
      }
      lineLength_ = 0;
      continue;
    }
    if (c == '\r') {
      sawCR_ = true;
      ++i;
      continue;
    }
    if (c == '\n') {
      fail(400, "bare LF line ending");
      return -1;
    }
    if (c == '\0') {
      fail(400, "NUL byte in message head");
      return -1;
    }
    if (lineLength_ == 0 && lines_ > 0 && (c == ' ' || c == '\t')) {
      fail(400, "obsolete line folding");
      return -1;
    }
    const size_t j = skipOrdinaryBytes(data, i + 1, limit);
    lineLength_ += j - i;
    i = j;
  }
  headBytes_ += i;
  if (limit < len) {
    fail(431, "request header fields too large");
    return -1;
  }
  return static_cast<long>(len);
}

bool Parser::checkPendingCrlf(const char* data, size_t len, size_t& checked) {
  static constexpr char kCrlf[] = "\r\n";
  checked = 0;
  while (pendingCrlf_ > 0 && checked < len) {
    if (data[checked] != kCrlf[2 - pendingCrlf_]) {
      return false;
    }
    ++checked;
    --pendingCrlf_;
  }
  return true;
}

void Parser::startSizeLine(const char* at) {
  sizeLineOpen_ = true;
  sizeLineAt_ = at;
  sizeDigits_ = 0;
  sizeDigitsEnded_ = false;
}

bool Parser::countSizeDigits(const char* to) {
  if (!sizeLineOpen_) {
    return true;
  }
  for (const char* c = sizeLineAt_; c < to && !sizeDigitsEnded_; ++c) {
    const char x = static_cast<char>(*c | 0x20);
    if ((*c >= '0' && *c <= '9') || (x >= 'a' && x <= 'f')) {
      ++sizeDigits_;
    } else {
      sizeDigitsEnded_ = true;
    }
  }
  sizeLineAt_ = to;
  return sizeDigits_ <= 16;
}

bool Parser::checkChunkDataEnd(const char* after) {
  const size_t available = static_cast<size_t>(feedEnd_ - after);
  pendingCrlf_ = 2;
  size_t checked = 0;
  return checkPendingCrlf(after, available, checked);
}

void Parser::rememberTail(const char* data, size_t len) {
  constexpr size_t kTail = sizeof tail_;
  if (len >= kTail) {
    std::memcpy(tail_, data + len - kTail, kTail);
    return;
  }
  std::memmove(tail_, tail_ + len, kTail - len);
  std::memcpy(tail_ + kTail - len, data, len);
}

Parser::Status Parser::feed(const char* data, size_t len, size_t& consumed) {
  consumed = 0;
  if (!headDone_) {
    const long headBytes = scanHead(data, len);
    if (headBytes < 0) {
      return Status::Error;
    }
    bodyStart_ = data + headBytes;  // used only if the head ends in this feed
  } else if (inTrailers_ && scanHead(data, len) < 0) {
    return Status::Error;
  }
  size_t checked = 0;
  if (pendingCrlf_ > 0 && !checkPendingCrlf(data, len, checked)) {
    return fail(400, "chunk data not followed by CRLF");
  }
  sizeLineAt_ = data + checked;  // a chunk-size line still open goes on here
  feedEnd_ = data + len;
  llhttp_errno_t err = llhttp_execute(&parser_, data, len);
  while (err == HPE_PAUSED && chunkLinePaused_) {
    // Paused by onChunkHeader just after the byte llhttp took as the chunk-size line's LF.
    chunkLinePaused_ = false;
    const char* next = llhttp_get_error_pos(&parser_);
    if (next[-1] != '\n') {
      return fail(400, "chunk size line not ended by CRLF");
    }
    if (!countSizeDigits(next)) {
      return fail(400, "chunk size of more than 16 hex digits");
    }
    sizeLineOpen_ = false;
    if (lastChunk_) {
      // The trailer section follows; llhttp reads its lines as loosely as a head's (any byte
      // after a CR ends a line), so the same scanner checks it (found by the
      // http_response_parser fuzzer).
      inTrailers_ = true;
      headBytes_ = lineLength_ = 0;
      lines_ = 1;  // the first empty line ends the section
      sawCR_ = false;
      if (scanHead(next, static_cast<size_t>(feedEnd_ - next)) < 0) {
        return Status::Error;
      }
    }
    llhttp_resume(&parser_);
    err = llhttp_execute(&parser_, next, static_cast<size_t>(feedEnd_ - next));
  }
  if (stopped_) {
    return Status::Stopped;
  }
  switch (err) {
    case HPE_OK:
      if (!countSizeDigits(feedEnd_)) {
        return fail(400, "chunk size of more than 16 hex digits");
      }
      consumed = len;
      rememberTail(data, len);
      return Status::Ok;
    case HPE_PAUSED:
      consumed = static_cast<size_t>(llhttp_get_error_pos(&parser_) - data);
      rememberTail(data, consumed);
      if (head_.body == BodyKind::Chunked && std::memcmp(tail_, "\r\n\r\n", 4) != 0) {
        return fail(400, "chunked message not ended by CRLF CRLF");
      }
      return Status::Paused;
    default:
      if (errorReason_.empty()) {
        errorReason_ = llhttp_get_error_reason(&parser_);
      }
      return Status::Error;
  }
}

Parser::Status Parser::finish() {
  const llhttp_errno_t err = llhttp_finish(&parser_);
  if (stopped_) {
    return Status::Stopped;
  }
  if (err == HPE_OK || err == HPE_PAUSED) {
    return err == HPE_OK ? Status::Ok : Status::Paused;
  }
  return fail(400, llhttp_get_error_reason(&parser_));
}

void Parser::resume() {
  llhttp_resume(&parser_);
  chunkRemaining_ = 0;
  inChunkData_ = false;
  chunkLinePaused_ = false;
  sizeLineOpen_ = inTrailers_ = false;
  pendingCrlf_ = 0;
  inMessage_ = false;
  headDone_ = false;
  headBytes_ = 0;
  lineLength_ = 0;
  lines_ = 0;
  sawCR_ = false;
}

int Parser::onMessageBegin(llhttp_t* p) {
  Parser* s = self(p);
  s->head_.reset();
  s->currentHeader_ = nullptr;
  s->inValue_ = false;
  s->inMessage_ = true;
  s->headDone_ = false;
  s->sawTrailers_ = false;
  return 0;
}

int Parser::onUrl(llhttp_t* p, const char* at, size_t len) {
  self(p)->head_.target.append(at, len);
  return 0;
}

int Parser::onStatus(llhttp_t* p, const char* at, size_t len) {
  self(p)->head_.reason.append(at, len);
  return 0;
}

int Parser::onHeaderField(llhttp_t* p, const char* at, size_t len) {
  Parser* s = self(p);
  if (s->headDone_) {
    // A trailer field. llhttp 8.1 acts on framing fields in trailers (a Connection: close
    // trailer makes it swallow the rest of the connection) while keep-alive was decided from
    // the head; requests with trailers are refused, and a response with trailers ends its
    // connection's reuse. Trailer contents are not forwarded.
    s->sawTrailers_ = true;
    if (llhttp_get_type(p) == HTTP_REQUEST) {
      s->fail(400, "trailer fields are not supported");
      return HPE_USER;
    }
    return 0;
  }
  if (s->currentHeader_ == nullptr || s->inValue_) {
    s->currentHeader_ = &s->head_.headers.appendEmpty();
    s->inValue_ = false;
  }
  s->currentHeader_->name.append(at, len);
  return 0;
}

int Parser::onHeaderValue(llhttp_t* p, const char* at, size_t len) {
  Parser* s = self(p);
  if (s->headDone_) {
    return 0;  // trailer value (see onHeaderField)
  }
  s->currentHeader_->value.append(at, len);
  return 0;
}

int Parser::onHeaderValueComplete(llhttp_t* p) {
  Parser* s = self(p);
  if (s->currentHeader_ != nullptr && !s->headDone_) {
    std::string& v = s->currentHeader_->value;
    while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) {
      v.pop_back();
    }
  }
  return 0;
}

bool Parser::validateHead() {
  MessageHead& h = head_;
  const HeaderList& hs = h.headers;
  // One pass over the head for everything the checks below need.
  size_t teCount = 0;
  size_t clCount = 0;
  size_t hostCount = 0;
  const std::string* transferEncoding = nullptr;
  const std::string* expect = nullptr;
  for (const Header& hd : hs) {
    if (hd.name.empty() || !isToken(hd.name)) {
      fail(400, "invalid header name");
      return false;
    }
    switch (hd.name.size()) {
      case 4:
        hostCount += iequals(hd.name, "host") ? 1 : 0;
        break;
      case 6:
        if (expect == nullptr && iequals(hd.name, "expect")) {
          expect = &hd.value;
        }
        break;
      case 14:
        clCount += iequals(hd.name, "content-length") ? 1 : 0;
        break;
      case 17:
        if (iequals(hd.name, "transfer-encoding")) {
          ++teCount;
          transferEncoding = &hd.value;
        }
        break;
      default:
        break;
    }
  }
  if (teCount > 0 && clCount > 0) {
    fail(400, "both Content-Length and Transfer-Encoding");
    return false;
  }
  if (clCount > 1) {
    fail(400, "duplicate Content-Length");
    return false;
  }
  if (h.versionMajor != 1 || h.versionMinor > 1) {
    fail(400, "unsupported HTTP version");
    return false;
  }
  // Framing must be what llhttp will apply: "chunked\t" passes a trimmed comparison but is not
  // chunked to llhttp.
  if (teCount == 1 && (parser_.flags & F_CHUNKED) == 0) {
    fail(400, "unsupported Transfer-Encoding");
    return false;
  }
  if (llhttp_get_type(&parser_) == HTTP_RESPONSE && (h.status < 100 || h.status > 999)) {
    fail(400, "invalid status code");
    return false;
  }
  if (llhttp_get_type(&parser_) == HTTP_REQUEST) {
    if (teCount > 1 || (teCount == 1 && !iequals(trim(*transferEncoding), "chunked"))) {
      fail(400, "unsupported Transfer-Encoding");
      return false;
    }
    if (h.target.empty() || (h.target[0] != '/' && !(h.target == "*" && h.method == HTTP_OPTIONS))) {
      fail(400, "request target must be in origin form");
      return false;
    }
    for (char c : h.target) {
      const auto u = static_cast<unsigned char>(c);
      if (u <= 0x20 || u == 0x7f) {
        fail(400, "invalid character in request target");
        return false;
      }
    }
    if (h.method == HTTP_CONNECT) {
      // A reverse proxy does not tunnel; llhttp would treat the rest of the stream as tunnel data.
      fail(400, "CONNECT is not supported");
      return false;
    }
    if (hostCount > 1 || (hostCount == 0 && h.versionMinor >= 1)) {
      fail(400, "exactly one Host header is required");
      return false;
    }
    if (expect != nullptr) {
      h.expectContinue = iequals(trim(*expect), "100-continue");
    }
  }
  return true;
}

int Parser::onHeadersComplete(llhttp_t* p) {
  Parser* s = self(p);
  s->headDone_ = true;
  MessageHead& h = s->head_;
  h.versionMajor = llhttp_get_http_major(p);
  h.versionMinor = llhttp_get_http_minor(p);
  h.keepAlive = llhttp_should_keep_alive(p) != 0;
  if (llhttp_get_type(p) == HTTP_REQUEST) {
    h.method = static_cast<llhttp_method_t>(llhttp_get_method(p));
  } else {
    h.status = llhttp_get_status_code(p);
  }
  if (!s->validateHead()) {
    return -1;
  }
  bool noBody = false;
  if (llhttp_get_type(p) == HTTP_REQUEST) {
    h.method = static_cast<llhttp_method_t>(llhttp_get_method(p));
    if (p->flags & F_CHUNKED) {
      h.body = BodyKind::Chunked;
    } else if (p->flags & F_CONTENT_LENGTH) {
      h.body = p->content_length > 0 ? BodyKind::Length : BodyKind::None;
      h.contentLength = p->content_length;
    }
  } else {
    h.status = llhttp_get_status_code(p);
    noBody = s->nextResponseNoBody_ || (h.status >= 100 && h.status < 200) || h.status == 204 || h.status == 304;
    if (noBody) {
      h.body = BodyKind::None;
      if (p->flags & F_CONTENT_LENGTH) {
        h.contentLength = p->content_length;
      }
    } else if (p->flags & F_CHUNKED) {
      h.body = BodyKind::Chunked;
    } else if (p->flags & F_CONTENT_LENGTH) {
      h.body = BodyKind::Length;
      h.contentLength = p->content_length;
    } else {
      h.body = BodyKind::UntilClose;
    }
    if (h.status >= 200) {
      s->nextResponseNoBody_ = false;
    }
  }
  if (!s->sink_->onMessageHead(h)) {
    s->stopped_ = true;
    return -1;
  }
  if (h.body == BodyKind::Chunked) {
    s->startSizeLine(s->bodyStart_);
  }
  return noBody ? 1 : 0;
}

int Parser::onChunkHeader(llhttp_t* p) {
  Parser* s = self(p);
  s->chunkRemaining_ = p->content_length;
  s->inChunkData_ = p->content_length > 0;
  // llhttp 8.1 (non-strict) takes any byte after the chunk-size line's CR as its LF ("5\rxhello"),
  // and this callback gets no position: pausing lets feed() look at that byte (found by the
  // http_response_parser fuzzer).
  s->chunkLinePaused_ = true;
  s->lastChunk_ = p->content_length == 0;
  return HPE_PAUSED;
}

int Parser::onBody(llhttp_t* p, const char* at, size_t len) {
  Parser* s = self(p);
  if (s->inChunkData_) {
    s->chunkRemaining_ -= std::min<uint64_t>(s->chunkRemaining_, len);
    if (s->chunkRemaining_ == 0) {
      s->inChunkData_ = false;
      if (!s->checkChunkDataEnd(at + len)) {
        s->fail(400, "chunk data not followed by CRLF");
        return HPE_USER;
      }
      // The next chunk-size line starts after the CRLF (in the next feed when that is split).
      const char* after = at + len;
      s->startSizeLine(s->feedEnd_ - after >= 2 ? after + 2 : s->feedEnd_);
    }
  }
  if (!s->sink_->onMessageBody(at, len)) {
    s->stopped_ = true;
    return HPE_USER;
  }
  return 0;
}

int Parser::onMessageCompleteCb(llhttp_t* p) {
  Parser* s = self(p);
  s->sink_->onMessageComplete();
  if (s->stopped_) {
    return HPE_USER;
  }
  return HPE_PAUSED;
}

}  // namespace http

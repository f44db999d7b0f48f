#pragma once
// HTTP/1.1 message parser on llhttp, strict enough for a proxy: anything a downstream or
// upstream peer could read differently (request smuggling vectors) is an error here.
#include <llhttp.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "common/http/headers.h"

namespace http {

enum class BodyKind : uint8_t { None, Length, Chunked, UntilClose };

struct MessageHead {
  // Requests.
  llhttp_method_t method = HTTP_GET;
  std::string target;
  // Responses.
  int status = 0;
  std::string reason;

  uint8_t versionMajor = 1;
  uint8_t versionMinor = 1;
  HeaderList headers;
  bool keepAlive = true;
  BodyKind body = BodyKind::None;
  uint64_t contentLength = 0;
  bool expectContinue = false;

  std::string_view methodName() const { return llhttp_method_name(method); }
  void reset();
};

// Incremental parser for one direction of one connection. Messages are delivered to a Sink;
// after each complete message the parser pauses, so a connection handles pipelined requests
// strictly one at a time and resumes when the response is done.
class Parser {
 public:
  class Sink {
   public:
    virtual ~Sink() = default;
    // The head is complete. Return false to stop parsing (the sink replied or closed).
    virtual bool onMessageHead(MessageHead& head) = 0;
    // A piece of (de-chunked) body. Return false to stop parsing.
    virtual bool onMessageBody(const char* data, size_t len) = 0;
    // The message is complete; the parser pauses after this.
    virtual void onMessageComplete() = 0;
  };

  enum class Status { Ok, Paused, Stopped, Error };

  Parser(llhttp_type_t type, Sink* sink, size_t maxHeadBytes);
  Parser(const Parser&) = delete;
  Parser& operator=(const Parser&) = delete;

  // Makes a parser between messages (or new) serve another connection, as if newly constructed
  // (the head's storage is kept for reuse).
  void rebind(Sink* sink, size_t maxHeadBytes);

  // Parses `len` bytes. `consumed` is how many bytes were used: all of them for Ok; up to the end of
  // the completed message for Paused; undefined for Stopped/Error.
  Status feed(const char* data, size_t len, size_t& consumed);
  // The peer closed: completes a read-until-close body, or reports a truncated message.
  Status finish();
  // Continue after a Paused message: the next message starts.
  void resume();
  // For responses to HEAD (and similar), the next response has no body whatever its headers say.
  void setNextResponseHasNoBody(bool v) { nextResponseNoBody_ = v; }

  // Valid after Error: the status a server should answer with (400 or 431) and a short reason.
  int errorStatus() const { return errorStatus_; }
  const std::string& errorReason() const { return errorReason_; }
  // True once any byte of the current message has been seen.
  bool inMessage() const { return inMessage_; }
  // True when the current message had trailer fields (a response then ends its connection's reuse).
  bool sawTrailers() const { return sawTrailers_; }
  // True while the head of the current message is incomplete (bytes seen, head not done).
  bool inHead() const { return inMessage_ && !headDone_; }

 private:
  static const llhttp_settings_t& settings();
  static int onMessageBegin(llhttp_t* p);
  static int onUrl(llhttp_t* p, const char* at, size_t len);
  static int onStatus(llhttp_t* p, const char* at, size_t len);
  static int onHeaderField(llhttp_t* p, const char* at, size_t len);
  static int onHeaderValue(llhttp_t* p, const char* at, size_t len);
  static int onHeaderValueComplete(llhttp_t* p);
  static int onHeadersComplete(llhttp_t* p);
  static int onBody(llhttp_t* p, const char* at, size_t len);
  static int onMessageCompleteCb(llhttp_t* p);
  static int onChunkHeader(llhttp_t* p);
  // llhttp 8.1 (Debian 12) accepts chunk data not followed by CRLF, a chunk-size line ended by CR
  // and any byte, and a chunked message ended by a bare LF; all are request-smuggling vectors, so
  // the raw bytes are checked here.
  bool checkChunkDataEnd(const char* after);
  // llhttp counts a chunk size's value, not its digits: "00000000000000000005" is 5 to it, while
  // a peer that stops at 16 digits reads 0. More than 16 hex digits are refused (as Go's
  // net/http does). A size line may span feeds, so its digits are counted up to `to` as it comes.
  void startSizeLine(const char* at);
  bool countSizeDigits(const char* to);
  bool checkPendingCrlf(const char* data, size_t len, size_t& skip);
  void rememberTail(const char* data, size_t len);

  // Checks raw head bytes for what llhttp tolerates but a proxy must not: bare LF, bare CR, NUL,
  // obsolete line folding. Returns the number of bytes that belong to the head, or -1 on error.
  long scanHead(const char* data, size_t len);
  Status fail(int status, std::string reason);
  bool validateHead();

  llhttp_t parser_{};
  Sink* sink_;
  size_t maxHeadBytes_;
  MessageHead head_;
  Header* currentHeader_ = nullptr;
  bool inValue_ = false;
  bool inMessage_ = false;
  bool headDone_ = false;
  bool stopped_ = false;
  bool nextResponseNoBody_ = false;
  bool sawTrailers_ = false;
  // Head scanner state.
  size_t headBytes_ = 0;
  size_t lineLength_ = 0;
  size_t lines_ = 0;
  bool sawCR_ = false;
  // Chunked-framing checks (see checkChunkDataEnd).
  const char* feedEnd_ = nullptr;
  uint64_t chunkRemaining_ = 0;
  bool inChunkData_ = false;
  int pendingCrlf_ = 0;  // bytes of "\r\n" after chunk data still to verify in the next feed
  bool chunkLinePaused_ = false;  // llhttp paused at the end of a chunk-size line (onChunkHeader)
  const char* bodyStart_ = nullptr;  // where the head scanner saw the head end in this feed
  bool sizeLineOpen_ = false;        // a chunk-size line started and its LF is not consumed yet
  bool sizeDigitsEnded_ = false;     // the size line's hex digits are all counted
  int sizeDigits_ = 0;
  const char* sizeLineAt_ = nullptr;  // where counting goes on in this feed
  bool lastChunk_ = false;    // the chunk-size line just read was the last chunk's ("0")
  bool inTrailers_ = false;   // scanning the trailer section with scanHead
  char tail_[4] = {0, 0, 0, 0};  // the last four bytes fed, for the end-of-message check
  int errorStatus_ = 400;
  std::string errorReason_;
};

}  // namespace http

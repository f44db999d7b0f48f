#pragma once
// Per-loop state shared by the uvx primitives, hung on loop->data (internal to common/uv).
#include <uv.h>

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/uv/deadline_timer.h"

namespace uvx {

class TcpStream;

struct LoopState {
  static constexpr size_t kReadBufferSize = 64 * 1024;
  // One read buffer shared by all connections of the loop (data is consumed or copied before the
  // next read).
  char readBuffer[kReadBufferSize];
  bool readBufferInUse = false;
  // Streams with corked output, flushed by `prepare` just before the loop polls.
  std::vector<TcpStream*> corked;
  uv_prepare_t* prepare = nullptr;
  std::string tlsPlain;  // decrypted bytes of the current read
  // Output buffers of streams that have nothing corked: a stream borrows one for the bytes of a
  // loop turn and returns it once they are written, so an idle connection holds none.
  std::vector<std::string> spareWriteBuffers;
  // DeadlineTimer queues, one per distinct timeout (a handful: the configured timeouts).
  std::vector<std::pair<uint64_t, std::unique_ptr<DeadlineQueue>>> deadlineQueues;

  ~LoopState();
};

LoopState& createLoopState(uv_loop_t* loop);

// The loop's state, created on first use.
inline LoopState& loopState(uv_loop_t* loop) {
  return loop->data != nullptr ? *static_cast<LoopState*>(loop->data) : createLoopState(loop);
}

}  // namespace uvx

#pragma once
// Ownership of libuv handles: a handle is heap-allocated (libuv keeps its address), its `data`
// points at the owning object, and its memory is released only in the close callback.
#include <uv.h>

#include <utility>

namespace uvx {

// Owns one heap-allocated libuv handle. Destroying (or close()-ing) the owner calls uv_close();
// the memory is freed in the close callback, so the owner may go away right after. Once closed,
// libuv delivers no further callbacks for the handle (other than cancelled requests' callbacks,
// which callers must make self-contained).
template <typename T>
class OwnedHandle {
 public:
  OwnedHandle() : handle_(new T{}) {}
  ~OwnedHandle() { close(); }
  OwnedHandle(const OwnedHandle&) = delete;
  OwnedHandle& operator=(const OwnedHandle&) = delete;

  T* get() const { return handle_; }
  uv_handle_t* base() const { return reinterpret_cast<uv_handle_t*>(handle_); }
  // Call after uv_*_init succeeded, so close() knows the loop must be told.
  void markInitialized() { initialized_ = true; }
  bool isOpen() const { return handle_ != nullptr; }

  void close() {
    if (handle_ == nullptr) {
      return;
    }
    if (initialized_ && !uv_is_closing(base())) {
      handle_->data = nullptr;
      uv_close(base(), [](uv_handle_t* h) { delete reinterpret_cast<T*>(h); });
    } else if (!initialized_) {
      delete handle_;
    }
    handle_ = nullptr;
  }

 private:
  T* handle_;
  bool initialized_ = false;
};

}  // namespace uvx

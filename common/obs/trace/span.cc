#include "common/obs/trace/span.h"

#include <cstring>

#include "common/obs/trace/tracer.h"

namespace obs::trace {

std::string_view truncateUtf8(std::string_view s, size_t maxBytes) {
  if (s.size() <= maxBytes) {
    return s;
  }
  size_t n = maxBytes;
  // Back off over continuation bytes (10xxxxxx) so the cut lands before a sequence's lead byte.
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) {
    --n;
  }
  return s.substr(0, n);
}

// ---------------------------------------------------------------------------------------------
// SpanData

bool SpanData::append(std::string_view bytes, StrRef& out) {
  if (arena_.size() + bytes.size() > kMaxArenaBytes) {
    return false;
  }
  if (arena_.capacity() == 0) {
    arena_.reserve(512);  // a typical server span's keys and values fit in one allocation
  }
  out.offset = static_cast<uint32_t>(arena_.size());
  out.length = static_cast<uint32_t>(bytes.size());
  arena_.append(bytes);
  return true;
}

SpanData::Attribute* SpanData::slotFor(std::string_view key) {
  key = truncateUtf8(key, kMaxKeyBytes);
  for (uint32_t i = 0; i < count_; ++i) {
    if (view(attributes_[i].key) == key) {
      return &attributes_[i];
    }
  }
  if (count_ == kMaxAttributes || key.empty()) {
    ++dropped_;
    return nullptr;
  }
  Attribute& a = attributes_[count_];
  if (!append(key, a.key)) {
    ++dropped_;
    return nullptr;
  }
  a.type = AttributeType::Bool;
  a.value.b = false;
  ++count_;
  return &a;
}

void SpanData::setString(std::string_view key, std::string_view value) {
  Attribute* a = slotFor(key);
  if (a == nullptr) {
    return;
  }
  value = truncateUtf8(value, kMaxStringValueBytes);
  if (a->type == AttributeType::String && value.size() <= a->value.s.length) {
    // Overwrite in place: repeated sets of one key do not grow the arena.
    if (!value.empty()) {
      std::memcpy(arena_.data() + a->value.s.offset, value.data(), value.size());
    }
    a->value.s.length = static_cast<uint32_t>(value.size());
    return;
  }
  StrRef ref{};
  if (!append(value, ref)) {
    ++dropped_;
    ref = StrRef{0, 0};  // the key stays, with an empty value, so the type is still String
  }
  a->type = AttributeType::String;
  a->value.s = ref;
}

void SpanData::setInt(std::string_view key, int64_t value) {
  if (Attribute* a = slotFor(key)) {
    a->type = AttributeType::Int;
    a->value.i = value;
  }
}

void SpanData::setDouble(std::string_view key, double value) {
  if (Attribute* a = slotFor(key)) {
    a->type = AttributeType::Double;
    a->value.d = value;
  }
}

void SpanData::setBool(std::string_view key, bool value) {
  if (Attribute* a = slotFor(key)) {
    a->type = AttributeType::Bool;
    a->value.b = value;
  }
}

AttributeView SpanData::attribute(size_t index) const {
  const Attribute& a = attributes_[index];
  AttributeView v;
  v.key = view(a.key);
  v.type = a.type;
  switch (a.type) {
    case AttributeType::String: v.stringValue = view(a.value.s); break;
    case AttributeType::Int: v.intValue = a.value.i; break;
    case AttributeType::Double: v.doubleValue = a.value.d; break;
    case AttributeType::Bool: v.boolValue = a.value.b; break;
  }
  return v;
}

bool SpanData::findAttribute(std::string_view key, AttributeView& out) const {
  for (uint32_t i = 0; i < count_; ++i) {
    if (view(attributes_[i].key) == key) {
      out = attribute(i);
      return true;
    }
  }
  return false;
}

// ---------------------------------------------------------------------------------------------
// Span

Span::Span(Span&& other) noexcept
    : context_(other.context_), kind_(other.kind_), tracer_(other.tracer_), data_(std::move(other.data_)) {
  other.tracer_ = nullptr;
}

Span& Span::operator=(Span&& other) noexcept {
  if (this != &other) {
    end();  // the span being replaced is finished, not lost
    context_ = other.context_;
    kind_ = other.kind_;
    tracer_ = other.tracer_;
    data_ = std::move(other.data_);
    other.tracer_ = nullptr;
  }
  return *this;
}

Span::~Span() { end(); }

Span& Span::setString(std::string_view key, std::string_view value) {
  if (data_) {
    data_->setString(key, value);
  }
  return *this;
}

Span& Span::setInt(std::string_view key, int64_t value) {
  if (data_) {
    data_->setInt(key, value);
  }
  return *this;
}

Span& Span::setDouble(std::string_view key, double value) {
  if (data_) {
    data_->setDouble(key, value);
  }
  return *this;
}

Span& Span::setBool(std::string_view key, bool value) {
  if (data_) {
    data_->setBool(key, value);
  }
  return *this;
}

Span& Span::setName(std::string_view name) {
  if (data_) {
    data_->name.assign(truncateUtf8(name, SpanData::kMaxNameBytes));
  }
  return *this;
}

Span& Span::setError(std::string_view message) {
  if (data_) {
    data_->statusCode = StatusCode::Error;
    data_->statusMessage.assign(truncateUtf8(message, SpanData::kMaxStatusMessageBytes));
  }
  return *this;
}

Span& Span::setOk() {
  if (data_) {
    data_->statusCode = StatusCode::Ok;
    data_->statusMessage.clear();
  }
  return *this;
}

void Span::end() {
  if (data_) {
    end(nowUnixNanos());
  }
}

void Span::end(uint64_t endUnixNanos) {
  if (!data_) {
    return;
  }
  data_->endUnixNanos = endUnixNanos < data_->startUnixNanos ? data_->startUnixNanos : endUnixNanos;
  Tracer* tracer = tracer_;
  tracer_ = nullptr;
  tracer->submit(std::move(data_));
}

}  // namespace obs::trace

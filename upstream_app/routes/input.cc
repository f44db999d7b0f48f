#include "upstream_app/routes/input.h"

#include <rapidjson/document.h>
#include <rapidjson/error/en.h>

#include <limits>

#include "upstream_app/json/json.h"

namespace app::routes {

namespace {

// Strict RFC 8259 (RapidJSON's defaults: no comments, trailing commas, NaN; nothing after the
// value) plus UTF-8 validation.
constexpr unsigned kParseFlags = rapidjson::kParseValidateEncodingFlag;

InputError fail(std::string field, std::string message) { return InputError{std::move(field), std::move(message)}; }

// Parses the whole body as one JSON object; anything after it (other than whitespace) is an error.
InputError parseObject(std::string_view body, rapidjson::Document& doc) {
  doc.Parse<kParseFlags>(body.data(), body.size());
  if (doc.HasParseError()) {
    return fail("body", std::string("invalid JSON: ") + rapidjson::GetParseError_En(doc.GetParseError()) +
                            " at offset " + std::to_string(doc.GetErrorOffset()));
  }
  if (!doc.IsObject()) {
    return fail("body", "the request body must be a JSON object");
  }
  return {};
}

bool hasNul(const rapidjson::Value& v) {
  return std::string_view(v.GetString(), v.GetStringLength()).find('\0') != std::string_view::npos;
}

// An unpaired "\uDC00".."\uDFFF" escape passes RapidJSON (kParseValidateEncodingFlag checks raw
// bytes only) and decodes to ED B0..BF xx, which is not UTF-8: PostgreSQL then refuses the
// statement (a 500 for a bad request), and the order cannot be written back as JSON. Found by
// the app_input fuzzer.
bool hasSurrogate(const rapidjson::Value& v) {
  const std::string_view s(v.GetString(), v.GetStringLength());
  for (size_t i = s.find('\xed'); i != std::string_view::npos && i + 1 < s.size(); i = s.find('\xed', i + 1)) {
    if ((static_cast<unsigned char>(s[i + 1]) & 0xe0) == 0xa0) {
      return true;  // ED A0..BF: U+D800..U+DFFF
    }
  }
  return false;
}

// Looks a member up; absent -> nullptr.
const rapidjson::Value* member(const rapidjson::Value& obj, const char* name) {
  auto it = obj.FindMember(name);
  return it == obj.MemberEnd() ? nullptr : &it->value;
}

InputError readInt(const rapidjson::Value* v, const std::string& field, int64_t min, int64_t max,
                   const char* requirement, int64_t& out) {
  if (v == nullptr) {
    return fail(field, field + " is required (" + requirement + ")");
  }
  if (!v->IsInt64()) {
    if (v->IsUint64()) {
      return fail(field, field + " is too large (" + requirement + ")");
    }
    return fail(field, field + " must be " + requirement);
  }
  const int64_t n = v->GetInt64();
  if (n < min || n > max) {
    return fail(field, field + " must be " + requirement);
  }
  out = n;
  return {};
}

InputError readString(const rapidjson::Value* v, const std::string& field, bool allowEmpty, size_t maxBytes,
                      std::string& out) {
  const char* requirement = allowEmpty ? "a string" : "a non-empty string";
  if (v == nullptr) {
    return fail(field, field + " is required (" + requirement + ")");
  }
  if (!v->IsString()) {
    return fail(field, field + " must be " + requirement);
  }
  if (!allowEmpty && v->GetStringLength() == 0) {
    return fail(field, field + " must be " + requirement);
  }
  if (maxBytes != 0 && v->GetStringLength() > maxBytes) {
    return fail(field, field + " must be at most " + std::to_string(maxBytes) + " bytes long");
  }
  if (hasNul(*v)) {
    return fail(field, field + " must not contain NUL characters");
  }
  if (hasSurrogate(*v)) {
    return fail(field, field + " must not contain an unpaired UTF-16 surrogate escape");
  }
  out.assign(v->GetString(), v->GetStringLength());
  return {};
}

}  // namespace

InputError parseNewOrder(std::string_view body, NewOrder& out) {
  rapidjson::Document doc;
  if (InputError e = parseObject(body, doc); !e.ok()) {
    return e;
  }
  if (InputError e = readInt(member(doc, "customer_id"), "customer_id", 1, std::numeric_limits<int64_t>::max(),
                             "an integer greater than 0", out.customerId);
      !e.ok()) {
    return e;
  }
  const rapidjson::Value* items = member(doc, "items");
  if (items == nullptr) {
    return fail("items", "items is required (a non-empty array of order items)");
  }
  if (!items->IsArray()) {
    return fail("items", "items must be an array of order items");
  }
  if (items->Empty()) {
    return fail("items", "items must not be empty");
  }
  if (items->Size() > kMaxOrderItems) {
    return fail("items", "items must hold at most " + std::to_string(kMaxOrderItems) + " entries");
  }
  out.items.clear();
  out.items.reserve(items->Size());
  for (rapidjson::SizeType i = 0; i < items->Size(); ++i) {
    const rapidjson::Value& item = (*items)[i];
    const std::string prefix = "items[" + std::to_string(i) + "]";
    if (!item.IsObject()) {
      return fail(prefix, prefix + " must be an object with sku, quantity and unit_price_cents");
    }
    NewOrderItem parsed;
    if (InputError e = readString(member(item, "sku"), prefix + ".sku", false, kMaxSkuBytes, parsed.sku); !e.ok()) {
      return e;
    }
    if (InputError e = readInt(member(item, "quantity"), prefix + ".quantity", 1, std::numeric_limits<int32_t>::max(),
                               "an integer greater than 0", parsed.quantity);
        !e.ok()) {
      return e;
    }
    if (InputError e = readInt(member(item, "unit_price_cents"), prefix + ".unit_price_cents", 0,
                               std::numeric_limits<int64_t>::max(), "an integer of at least 0", parsed.unitPriceCents);
        !e.ok()) {
      return e;
    }
    out.items.push_back(std::move(parsed));
  }
  return {};
}

InputError parseArticleUpdate(std::string_view body, ArticleUpdate& out) {
  rapidjson::Document doc;
  if (InputError e = parseObject(body, doc); !e.ok()) {
    return e;
  }
  if (InputError e = readString(member(doc, "title"), "title", false, kMaxTitleBytes, out.title); !e.ok()) {
    return e;
  }
  if (InputError e = readString(member(doc, "body"), "body", true, 0, out.body); !e.ok()) {
    return e;
  }
  return {};
}

uint64_t fnv1a64(std::string_view data, uint64_t seed) {
  uint64_t h = seed;
  for (unsigned char c : data) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  return h;
}

std::string hex16(uint64_t v) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out(16, '0');
  for (int i = 15; i >= 0; --i) {
    out[static_cast<size_t>(i)] = kDigits[v & 0xf];
    v >>= 4;
  }
  return out;
}

std::string orderFingerprint(const NewOrder& order) {
  json::Buffer buf;
  json::Writer w(buf);
  w.StartObject();
  json::key(w, "customer_id");
  w.Int64(order.customerId);
  json::key(w, "items");
  w.StartArray();
  for (const NewOrderItem& item : order.items) {
    w.StartArray();
    json::string(w, item.sku);
    w.Int64(item.quantity);
    w.Int64(item.unitPriceCents);
    w.EndArray();
  }
  w.EndArray();
  w.EndObject();
  return hex16(fnv1a64(json::view(buf)));
}

std::string textArrayLiteral(const std::vector<std::string_view>& values) {
  // Every element double-quoted, with '"' and '\' backslash-escaped: the array input syntax then
  // reads any text back verbatim (commas, braces, spaces, NULL-looking words included).
  std::string out = "{";
  for (size_t i = 0; i < values.size(); ++i) {
    if (i > 0) {
      out.push_back(',');
    }
    out.push_back('"');
    for (char c : values[i]) {
      if (c == '"' || c == '\\') {
        out.push_back('\\');
      }
      out.push_back(c);
    }
    out.push_back('"');
  }
  out.push_back('}');
  return out;
}

std::string intArrayLiteral(const std::vector<int64_t>& values) {
  std::string out = "{";
  for (size_t i = 0; i < values.size(); ++i) {
    if (i > 0) {
      out.push_back(',');
    }
    out += std::to_string(values[i]);
  }
  out.push_back('}');
  return out;
}

}  // namespace app::routes

#include "common/config/env_subst.h"

namespace cfg::detail {
namespace {

bool isNameStart(char c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_'; }
bool isNameChar(char c) { return isNameStart(c) || (c >= '0' && c <= '9'); }
bool isBlank(char c) { return c == ' ' || c == '\t'; }

// A quote opens a quoted scalar only where a scalar can start; elsewhere (as
// in `it's`) it is an ordinary character of a plain scalar.
bool quoteCanStartAfter(char previousNonBlank) {
  switch (previousNonBlank) {
    case '\0':
    case ':':
    case '-':
    case '[':
    case '{':
    case ',':
    case '?':
      return true;
    default:
      return false;
  }
}

class Substituter {
 public:
  Substituter(std::string_view text, const EnvFn& env) : text_(text), env_(env) {}

  SubstitutionResult run() {
    result_.text.reserve(text_.size());
    char previousNonBlank = '\0';
    for (size_t i = 0; i < text_.size(); ++i) {
      char c = text_[i];
      if (c == '\n') {
        result_.text.push_back(c);
        ++line_;
        previousNonBlank = '\0';
        continue;
      }
      if (inDouble_) {
        if (c == '\\' && i + 1 < text_.size() && text_[i + 1] != '\n') {
          result_.text.push_back(c);
          result_.text.push_back(text_[++i]);
          continue;
        }
        if (c == '"') {
          inDouble_ = false;
        }
      } else if (inSingle_) {
        if (c == '\'') {
          if (i + 1 < text_.size() && text_[i + 1] == '\'') {
            result_.text.append("''");
            ++i;
            continue;
          }
          inSingle_ = false;
        }
      } else if (c == '#' && (i == 0 || isBlank(text_[i - 1]) || text_[i - 1] == '\n')) {
        size_t end = text_.find('\n', i);
        if (end == std::string_view::npos) {
          end = text_.size();
        }
        result_.text.append(text_.substr(i, end - i));
        i = end - 1;
        continue;
      } else if ((c == '"' || c == '\'') && quoteCanStartAfter(previousNonBlank)) {
        (c == '"' ? inDouble_ : inSingle_) = true;
      }
      if (c == '$' && i + 2 < text_.size() && text_[i + 1] == '$' && text_[i + 2] == '{') {
        result_.text.append("${");
        i += 2;
        previousNonBlank = '{';
        continue;
      }
      if (c == '$' && i + 1 < text_.size() && text_[i + 1] == '{') {
        i = substitute(i);
        previousNonBlank = 'x';
        continue;
      }
      result_.text.push_back(c);
      if (!isBlank(c)) {
        previousNonBlank = c;
      }
    }
    return std::move(result_);
  }

 private:
  void fail(std::string message) {
    result_.errors.push_back({line_, std::move(message)});
    result_.failedLines.insert(line_);
  }

  // text_[start] is the '$' of "${"; appends the replacement and returns the
  // index of the last character consumed.
  size_t substitute(size_t start) {
    size_t close = text_.find('}', start + 2);
    size_t lineEnd = text_.find('\n', start);
    if (close == std::string_view::npos || (lineEnd != std::string_view::npos && close > lineEnd)) {
      fail("unterminated environment reference \"${\" (missing '}')");
      result_.text.append("${");
      return start + 1;
    }
    std::string_view reference = text_.substr(start, close - start + 1);
    std::string_view body = text_.substr(start + 2, close - start - 2);
    size_t op = body.find(":-");
    std::string_view name = body.substr(0, op);
    bool validName = !name.empty() && isNameStart(name[0]);
    for (char c : name) {
      validName = validName && isNameChar(c);
    }
    if (!validName) {
      fail("malformed environment reference \"" + std::string(reference) +
           "\" (expected ${NAME} or ${NAME:-default})");
      return close;
    }
    std::optional<std::string> fallback;
    if (op != std::string_view::npos) {
      fallback = std::string(body.substr(op + 2));
      if (fallback->find("${") != std::string::npos) {
        fail("nested environment references are not supported in \"" + std::string(reference) + "\"");
        return close;
      }
    }
    std::optional<std::string> value = env_(std::string(name));
    if (value && value->empty()) {
      value.reset();  // `:-` semantics: empty counts as unset
    }
    if (!value && fallback) {
      value = fallback;
    }
    if (!value) {
      fail("environment variable " + std::string(name) + " is not set");
      return close;
    }
    if (value->find_first_of("\r\n") != std::string::npos) {
      fail("environment variable " + std::string(name) + " contains a line break");
      return close;
    }
    result_.text.append(*value);
    return close;
  }

  std::string_view text_;
  const EnvFn& env_;
  SubstitutionResult result_;
  int line_ = 1;
  bool inDouble_ = false;
  bool inSingle_ = false;
};

}  // namespace

SubstitutionResult substituteEnv(std::string_view text, const EnvFn& env) {
  return Substituter(text, env).run();
}

}  // namespace cfg::detail

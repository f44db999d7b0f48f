#pragma once

// ${VAR} / ${VAR:-default} substitution on the raw configuration text, done
// before YAML parsing so that a variable may supply any scalar (CONTRACT §3).

#include <functional>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace cfg::detail {

struct SubstitutionError {
  int line = 0;  // 1-based
  std::string message;
};

struct SubstitutionResult {
  std::string text;
  std::vector<SubstitutionError> errors;
  // Lines that had a substitution error: later errors on them would only
  // repeat the same problem ("expected a duration, got null"), so the loader
  // suppresses those.
  std::set<int> failedLines;
};

using EnvFn = std::function<std::optional<std::string>(const std::string&)>;

// Rules:
// - ${NAME} is replaced by the variable's value; unset or empty is an error.
// - ${NAME:-default} uses default when the variable is unset or empty (shell
//   semantics). default runs to the first '}' and cannot nest another ${...}.
// - NAME is [A-Za-z_][A-Za-z0-9_]*; anything else inside ${...} is an error.
// - $${ is an escape that produces a literal ${.
// - References inside YAML comments are left alone (so commented-out lines
//   never require a variable).
// - A value containing a line break is an error: it would shift every later
//   line number in error messages and could inject YAML structure.
// The output has exactly the input's line structure.
SubstitutionResult substituteEnv(std::string_view text, const EnvFn& env);

}  // namespace cfg::detail

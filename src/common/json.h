// A small strict JSON reader and writer for customar's topology and config files. Strict on purpose: these files
// steer which kernels run, so anything unexpected (trailing commas, comments, duplicate keys, NaN, deep nesting,
// oversized input, strings that are not UTF-8) is an error rather than a guess. Error messages quote the input
// escaped (text::printable).
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <variant>
#include <vector>

namespace customar::json {

struct Value;
using Array = std::vector<Value>;
using Object = std::vector<std::pair<std::string, Value>>;  // keeps file order for messages and round trips

struct Value {
  std::variant<std::nullptr_t, bool, double, std::string, std::shared_ptr<Array>, std::shared_ptr<Object>> v;
  bool is_integer = false;  // the number was written without fraction or exponent
  int64_t integer = 0;      // exact value when is_integer

  bool is_null() const { return std::holds_alternative<std::nullptr_t>(v); }
  bool is_bool() const { return std::holds_alternative<bool>(v); }
  bool is_number() const { return std::holds_alternative<double>(v); }
  bool is_string() const { return std::holds_alternative<std::string>(v); }
  bool is_array() const { return std::holds_alternative<std::shared_ptr<Array>>(v); }
  bool is_object() const { return std::holds_alternative<std::shared_ptr<Object>>(v); }
  const Array& array() const { return *std::get<std::shared_ptr<Array>>(v); }
  const Object& object() const { return *std::get<std::shared_ptr<Object>>(v); }
  const std::string& string() const { return std::get<std::string>(v); }
  bool boolean() const { return std::get<bool>(v); }
  const char* type_name() const;
};

/// Limits: input size and nesting depth. Exceeding either is a parse error.
inline constexpr size_t kMaxInputBytes = 1 << 20;
inline constexpr int kMaxDepth = 32;

/// Parses `text`. Throws ConfigError("<origin>: line L column C: <what>") on any error.
Value parse(const std::string& text, const std::string& origin);

/// Quotes and escapes a string for JSON output. The result is valid JSON and valid UTF-8 whatever `s` holds: control
/// characters (text::is_control) become \uNNNN escapes and each byte that is not UTF-8 the text \xNN; a string
/// parse() accepted comes back unchanged from parse(quote(s)).
std::string quote(const std::string& s);

}  // namespace customar::json

#include "common/json.h"

#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <set>

#include "common/text.h"
#include "customar/error.h"

namespace customar::json {

const char* Value::type_name() const {
  if (is_null()) return "null";
  if (is_bool()) return "boolean";
  if (is_number()) return is_integer ? "integer" : "number";
  if (is_string()) return "string";
  if (is_array()) return "array";
  return "object";
}

namespace {

class Parser {
 public:
  Parser(const std::string& text, const std::string& origin) : s_(text), origin_(origin) {}

  Value parse_document() {
    if (s_.size() > kMaxInputBytes) fail("input is larger than 1 MiB");
    skip_ws();
    Value v = parse_value(0);
    skip_ws();
    if (pos_ != s_.size()) fail("unexpected text after the JSON value");
    return v;
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    size_t line = 1, col = 1;
    for (size_t i = 0; i < pos_ && i < s_.size(); ++i) {
      if (s_[i] == '\n') {
        ++line;
        col = 1;
      } else {
        ++col;
      }
    }
    throw ConfigError(text::printable(origin_) + ": line " + std::to_string(line) + " column " + std::to_string(col) +
                      ": " + what);
  }

  void skip_ws() {
    while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r')) ++pos_;
  }

  bool consume(char c) {
    if (pos_ < s_.size() && s_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }

  void expect_word(const char* word) {
    for (const char* p = word; *p; ++p) {
      if (pos_ >= s_.size() || s_[pos_] != *p) fail(std::string("expected '") + word + "'");
      ++pos_;
    }
  }

  Value parse_value(int depth) {
    if (depth > kMaxDepth) fail("nesting deeper than 32 levels");
    if (pos_ >= s_.size()) fail("unexpected end of input");
    Value v;
    char c = s_[pos_];
    if (c == '{') {
      v.v = std::make_shared<Object>(parse_object(depth));
    } else if (c == '[') {
      v.v = std::make_shared<Array>(parse_array(depth));
    } else if (c == '"') {
      v.v = parse_string();
    } else if (c == 't') {
      expect_word("true");
      v.v = true;
    } else if (c == 'f') {
      expect_word("false");
      v.v = false;
    } else if (c == 'n') {
      expect_word("null");
      v.v = nullptr;
    } else if (c == '-' || (c >= '0' && c <= '9')) {
      parse_number(v);
    } else {
      fail("unexpected character '" + text::printable(std::string_view(&c, 1)) + "'");
    }
    return v;
  }

  Object parse_object(int depth) {
    Object obj;
    std::set<std::string> seen;
    ++pos_;  // '{'
    skip_ws();
    if (consume('}')) return obj;
    while (true) {
      skip_ws();
      if (pos_ >= s_.size() || s_[pos_] != '"') fail("expected a string key");
      std::string key = parse_string();
      if (!seen.insert(key).second) fail("duplicate key " + text::quoted(key));
      skip_ws();
      if (!consume(':')) fail("expected ':' after key " + text::quoted(key));
      skip_ws();
      Value val = parse_value(depth + 1);
      obj.emplace_back(std::move(key), std::move(val));
      skip_ws();
      if (consume(',')) continue;
      if (consume('}')) return obj;
      fail("expected ',' or '}' in object");
    }
  }

  Array parse_array(int depth) {
    Array arr;
    ++pos_;  // '['
    skip_ws();
    if (consume(']')) return arr;
    while (true) {
      skip_ws();
      arr.push_back(parse_value(depth + 1));
      skip_ws();
      if (consume(',')) continue;
      if (consume(']')) return arr;
      fail("expected ',' or ']' in array");
    }
  }

  static void append_utf8(std::string& out, uint32_t cp) {
    if (cp < 0x80) {
      out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      out += static_cast<char>(0xC0 | (cp >> 6));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += static_cast<char>(0xE0 | (cp >> 12));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      out += static_cast<char>(0xF0 | (cp >> 18));
      out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }

  // Copies the multi-byte UTF-8 sequence that starts one byte before pos_, or fails: strings are UTF-8 (RFC 8259),
  // and a name that is not would reach messages and customar-info's JSON output as bytes no reader can decode.
  void append_utf8_sequence(std::string& out) {
    size_t start = pos_ - 1;
    uint32_t cp = 0;
    size_t len = text::utf8_decode(std::string_view(s_).substr(start), &cp);
    if (len == 0) {
      pos_ = start;
      char buf[8];
      snprintf(buf, sizeof(buf), "0x%02X", static_cast<unsigned char>(s_[start]));
      fail(std::string("invalid UTF-8 in string (byte ") + buf + ")");
    }
    out.append(s_, start, len);
    pos_ = start + len;
  }

  uint32_t parse_hex4() {
    if (pos_ + 4 > s_.size()) fail("truncated \\u escape");
    uint32_t cp = 0;
    for (int i = 0; i < 4; ++i) {
      char h = s_[pos_++];
      cp <<= 4;
      if (h >= '0' && h <= '9')
        cp |= h - '0';
      else if (h >= 'a' && h <= 'f')
        cp |= h - 'a' + 10;
      else if (h >= 'A' && h <= 'F')
        cp |= h - 'A' + 10;
      else
        fail("bad hex digit in \\u escape");
    }
    return cp;
  }

  std::string parse_string() {
    std::string out;
    ++pos_;  // '"'
    while (true) {
      if (pos_ >= s_.size()) fail("unterminated string");
      char c = s_[pos_++];
      if (c == '"') return out;
      if (static_cast<unsigned char>(c) < 0x20) fail("control character in string");
      if (static_cast<unsigned char>(c) >= 0x80) {
        append_utf8_sequence(out);
        continue;
      }
      if (c != '\\') {
        out += c;
        continue;
      }
      if (pos_ >= s_.size()) fail("unterminated escape");
      char e = s_[pos_++];
      switch (e) {
        case '"':
          out += '"';
          break;
        case '\\':
          out += '\\';
          break;
        case '/':
          out += '/';
          break;
        case 'b':
          out += '\b';
          break;
        case 'f':
          out += '\f';
          break;
        case 'n':
          out += '\n';
          break;
        case 'r':
          out += '\r';
          break;
        case 't':
          out += '\t';
          break;
        case 'u': {
          uint32_t cp = parse_hex4();
          if (cp >= 0xD800 && cp <= 0xDBFF) {
            if (!(consume('\\') && consume('u'))) fail("unpaired surrogate in \\u escape");
            uint32_t lo = parse_hex4();
            if (lo < 0xDC00 || lo > 0xDFFF) fail("bad low surrogate in \\u escape");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
            fail("unpaired surrogate in \\u escape");
          }
          append_utf8(out, cp);
          break;
        }
        default:
          fail("bad escape '\\" + text::printable(std::string_view(&e, 1)) + "'");
      }
    }
  }

  void parse_number(Value& v) {
    size_t start = pos_;
    bool integral = true;
    consume('-');
    if (consume('0')) {
      // a leading zero stands alone
    } else if (pos_ < s_.size() && s_[pos_] >= '1' && s_[pos_] <= '9') {
      while (pos_ < s_.size() && isdigit(static_cast<unsigned char>(s_[pos_]))) ++pos_;
    } else {
      fail("bad number");
    }
    if (consume('.')) {
      integral = false;
      if (pos_ >= s_.size() || !isdigit(static_cast<unsigned char>(s_[pos_])))
        fail("bad number: digit expected after '.'");
      while (pos_ < s_.size() && isdigit(static_cast<unsigned char>(s_[pos_]))) ++pos_;
    }
    if (pos_ < s_.size() && (s_[pos_] == 'e' || s_[pos_] == 'E')) {
      integral = false;
      ++pos_;
      if (!consume('+')) consume('-');
      if (pos_ >= s_.size() || !isdigit(static_cast<unsigned char>(s_[pos_])))
        fail("bad number: exponent digits expected");
      while (pos_ < s_.size() && isdigit(static_cast<unsigned char>(s_[pos_]))) ++pos_;
    }
    std::string text = s_.substr(start, pos_ - start);
    double d = std::strtod(text.c_str(), nullptr);
    if (!std::isfinite(d)) fail("number out of range");
    v.v = d;
    if (integral) {
      errno = 0;
      char* end = nullptr;
      long long ll = std::strtoll(text.c_str(), &end, 10);
      if (errno == ERANGE) fail("integer out of the 64-bit range");
      v.is_integer = true;
      v.integer = ll;
    }
  }

  const std::string& s_;
  const std::string& origin_;
  size_t pos_ = 0;
};

}  // namespace

Value parse(const std::string& text, const std::string& origin) { return Parser(text, origin).parse_document(); }

std::string quote(const std::string& s) {
  // JSON cannot carry a byte that is not UTF-8: it is written as the text \xNN, so that the reader sees which byte it
  // was. Controls are escaped so that printing the output cannot drive a terminal.
  return "\"" + text::escape(s, text::kJsonStyle, SIZE_MAX) + "\"";
}

}  // namespace customar::json

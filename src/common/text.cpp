#include "common/text.h"

#include <cstdio>

namespace customar::text {

size_t utf8_decode(std::string_view s, uint32_t* cp) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  if (p[0] < 0x80) {
    *cp = p[0];
    return 1;
  }
  // (length, smallest code point of that length): a sequence that encodes a smaller one is overlong.
  size_t len = 0;
  uint32_t v = 0, min = 0;
  if ((p[0] & 0xE0) == 0xC0) {
    len = 2, v = p[0] & 0x1F, min = 0x80;
  } else if ((p[0] & 0xF0) == 0xE0) {
    len = 3, v = p[0] & 0x0F, min = 0x800;
  } else if ((p[0] & 0xF8) == 0xF0) {
    len = 4, v = p[0] & 0x07, min = 0x10000;
  } else {
    return 0;
  }
  if (n < len) return 0;
  for (size_t i = 1; i < len; ++i) {
    if ((p[i] & 0xC0) != 0x80) return 0;
    v = (v << 6) | (p[i] & 0x3F);
  }
  if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return 0;
  *cp = v;
  return len;
}

bool is_utf8(std::string_view s) {
  uint32_t cp = 0;
  for (size_t i = 0; i < s.size();) {
    size_t len = utf8_decode(s.substr(i), &cp);
    if (len == 0) return false;
    i += len;
  }
  return true;
}

bool is_control(uint32_t cp) {
  return cp < 0x20 || (cp >= 0x7F && cp <= 0x9F) || (cp >= 0x202A && cp <= 0x202E) || (cp >= 0x2066 && cp <= 0x2069);
}

std::string escape(std::string_view s, const EscapeStyle& style, size_t max_bytes) {
  std::string out;
  out.reserve(s.size() < max_bytes ? s.size() : max_bytes);
  char buf[16];
  uint32_t cp = 0;
  for (size_t i = 0; i < s.size();) {
    if (i >= max_bytes) {
      out += "...";
      break;
    }
    size_t len = utf8_decode(s.substr(i), &cp);
    if (len == 0) {
      std::snprintf(buf, sizeof(buf), style.bad_byte, static_cast<unsigned char>(s[i]));
      out += buf;
      i += 1;
      continue;
    }
    if (cp == '\\' || (cp == '"' && style.quote)) {
      out += '\\';
      out += static_cast<char>(cp);
    } else if (cp == '\n') {
      out += "\\n";
    } else if (cp == '\r') {
      out += "\\r";
    } else if (cp == '\t') {
      out += "\\t";
    } else if (is_control(cp)) {
      std::snprintf(buf, sizeof(buf), cp < 0x80 ? style.ascii_control : style.other_control, static_cast<unsigned>(cp));
      out += buf;
    } else {
      out.append(s.substr(i, len));
    }
    i += len;
  }
  return out;
}

std::string printable(std::string_view s, size_t max_bytes) { return escape(s, kTerminalStyle, max_bytes); }

std::string quoted(std::string_view s, size_t max_bytes) { return "\"" + printable(s, max_bytes) + "\""; }

}  // namespace customar::text

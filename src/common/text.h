// Text that came from outside (file contents, keys, names, paths, variables) made safe to print. A terminal obeys the
// escape sequences in what it is given, a NUL cuts a C string, and bytes that are not UTF-8 make JSON output
// unreadable; so every message that quotes such text, and customar-info's output, goes through printable() or
// json::quote(), which share the rules below.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace customar::text {

/// Length (1 to 4) of the well-formed UTF-8 sequence at the start of `s`, with its code point in `*cp`; 0 when the
/// bytes there are not one (a stray continuation byte, an overlong form, a surrogate, a code point above U+10FFFF,
/// or a sequence cut short). `s` must not be empty.
size_t utf8_decode(std::string_view s, uint32_t* cp);

/// True when every byte of `s` belongs to a well-formed UTF-8 sequence.
bool is_utf8(std::string_view s);

/// True for the code points that change how a terminal shows what follows instead of being shown themselves: the
/// C0 and C1 control characters, DEL, and the bidirectional overrides and isolates (which can make text read
/// differently from what it is).
bool is_control(uint32_t cp);

/// How escape() writes what it escapes: printf formats taking the byte or code point.
struct EscapeStyle {
  const char* bad_byte;       ///< a byte that is not part of well-formed UTF-8
  const char* ascii_control;  ///< a control code point below 0x80 other than \n, \r, \t
  const char* other_control;  ///< a control code point from 0x80 (C1, bidirectional controls)
  bool quote;                 ///< also write '"' as \"
};
/// For messages and terminal output: \xNN, and \u{NNNN} above 0x7F.
inline constexpr EscapeStyle kTerminalStyle{"\\x%02X", "\\x%02X", "\\u{%04X}", false};
/// For the inside of a JSON string: \uNNNN for controls, the text \xNN (written \\xNN) for a bad byte.
inline constexpr EscapeStyle kJsonStyle{"\\\\x%02X", "\\u%04x", "\\u%04x", true};

/// `s` with every control code point (is_control) and every byte that is not part of well-formed UTF-8 written as an
/// escape in `style`, \n, \r and \t as themselves escaped, and a backslash doubled; the result is valid UTF-8 that
/// names every byte of the input. Input beyond `max_bytes` is cut (at a character boundary) and "..." marks the cut.
/// Never throws but for std::bad_alloc.
std::string escape(std::string_view s, const EscapeStyle& style, size_t max_bytes);

/// escape(s, kTerminalStyle, max_bytes): outside text made safe to print in a message or on a terminal.
std::string printable(std::string_view s, size_t max_bytes = 1024);

/// printable(s) between double quotes: for messages that name a key or value.
std::string quoted(std::string_view s, size_t max_bytes = 1024);

}  // namespace customar::text

// Text from outside made safe to print (src/common/text.h), and the JSON reader's and writer's UTF-8 rules: a key or
// name can carry terminal escape sequences, a NUL, or bytes that are not UTF-8, and none of them may reach a
// terminal, cut a message short or make customar's JSON output unreadable.
#include <gtest/gtest.h>

#include <cstring>

#include "common/json.h"
#include "common/text.h"
#include "customar/config.h"
#include "customar/error.h"
#include "customar/topology.h"

using namespace customar;

namespace {

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

// What a C caller (printf("%s", e.what())) sees of a message: up to the first NUL.
size_t c_length(const std::string& s) { return std::strlen(s.c_str()); }

}  // namespace

TEST(Printable, EscapesControlsAndBadBytesKeepsTheRest) {
  EXPECT_EQ(text::printable("plain é 漢字 😀"), "plain é 漢字 😀");
  EXPECT_EQ(text::printable(std::string("a\x1b[31mb\x00"
                                        "c",
                                        9)),
            "a\\x1B[31mb\\x00c");
  EXPECT_EQ(text::printable("\n\r\t\x7f\\"), "\\n\\r\\t\\x7F\\\\");
  EXPECT_EQ(text::printable("\xc2\x9b"), "\\u{009B}");  // C1 CSI: an escape sequence on some terminals
  EXPECT_EQ(text::printable("ab\xe2\x80\xae"
                            "cd"),
            "ab\\u{202E}cd");  // right-to-left override
  EXPECT_EQ(text::printable("\xff\xc3"), "\\xFF\\xC3");
  EXPECT_EQ(text::printable("\xc0\xaf"), "\\xC0\\xAF");                    // overlong '/'
  EXPECT_EQ(text::printable("\xed\xa0\x80"), "\\xED\\xA0\\x80");           // an encoded surrogate
  EXPECT_EQ(text::printable("\xf4\x90\x80\x80"), "\\xF4\\x90\\x80\\x80");  // above U+10FFFF
}

TEST(Printable, LongTextIsCut) {
  std::string out = text::printable(std::string(5000, 'k'), 100);
  EXPECT_EQ(out, std::string(100, 'k') + "...");
}

TEST(Printable, Utf8Validation) {
  EXPECT_TRUE(text::is_utf8("é漢😀"));
  EXPECT_TRUE(text::is_utf8(""));
  for (const char* bad : {"\x80", "\xc3", "\xe6\xbc", "\xc0\x80", "\xed\xbf\xbf", "\xf8\x88\x80\x80\x80"})
    EXPECT_FALSE(text::is_utf8(bad)) << text::printable(bad);
}

TEST(JsonUtf8, InvalidUtf8InAStringIsAnErrorWithItsPosition) {
  for (const char* bad : {"{\"name\": \"ab\xff\"}", "{\"name\": \"\xc3\"}", "{\"name\": \"\xc0\xaf\"}",
                          "{\"name\": \"\xed\xa0\x80\"}", "{\"k\xfe\": 1}"}) {
    std::string err = error_of([&] { json::parse(bad, "f.json"); });
    EXPECT_NE(err.find("f.json: line 1 column"), std::string::npos) << text::printable(bad) << ": " << err;
    EXPECT_NE(err.find("invalid UTF-8 in string"), std::string::npos) << err;
    EXPECT_TRUE(text::is_utf8(err)) << text::printable(err);
  }
  EXPECT_EQ(json::parse("\"é漢😀\"", "t").string(), "é漢😀");
}

TEST(JsonUtf8, AStrayByteOutsideAStringIsEscapedInTheMessage) {
  std::string err = error_of([] { json::parse("{\"a\": \x1b}", "t"); });
  EXPECT_NE(err.find("unexpected character '\\x1B'"), std::string::npos) << err;
  EXPECT_EQ(err.find('\x1b'), std::string::npos);
}

TEST(JsonUtf8, ANulInAKeyDoesNotCutTheMessage) {
  std::string err = error_of([] { topology_from_json(R"({"gpus\u0000 hidden": []})"); });
  EXPECT_EQ(c_length(err), err.size()) << "a NUL cut the message";
  EXPECT_NE(err.find("gpus\\x00 hidden"), std::string::npos) << err;
  EXPECT_NE(err.find("unknown field; allowed"), std::string::npos) << err;
  err = error_of([] { merge_config_json(builtin_config(), R"({"entries\u0000x": []})", "c.json"); });
  EXPECT_EQ(c_length(err), err.size());
  EXPECT_NE(err.find("unknown field"), std::string::npos) << err;
}

TEST(JsonUtf8, EscapeSequencesInKeysAreEscapedInMessages) {
  std::string err = error_of([] { topology_from_json(R"({"\u001b]0;pwned\u0007": 1})"); });
  EXPECT_EQ(err.find('\x1b'), std::string::npos) << err;
  EXPECT_NE(err.find("\\x1B]0;pwned\\x07"), std::string::npos) << err;
  err = error_of([] { json::parse(R"({"\u001b[2J": 1, "\u001b[2J": 2})", "t"); });
  EXPECT_NE(err.find("duplicate key \"\\x1B[2J\""), std::string::npos) << err;
}

TEST(JsonUtf8, QuoteAlwaysWritesValidUtf8Json) {
  using namespace std::string_literals;
  const std::string raw = "bad\xff\xfe byte, esc \x1b[31m, nul \0 bidi \xe2\x80\xae"s;
  std::string q = json::quote(raw);
  EXPECT_TRUE(text::is_utf8(q)) << text::printable(q);
  EXPECT_EQ(q.find('\x1b'), std::string::npos);
  EXPECT_EQ(c_length(q), q.size());
  // Each byte that is not UTF-8 comes back as the text \xNN; everything else as it was.
  EXPECT_EQ(json::parse(q, "t").string(), "bad\\xFF\\xFE byte, esc \x1b[31m, nul \0 bidi \xe2\x80\xae"s);
  for (const std::string& s : {"é漢😀 \"q\" \\ \n\t"s, "\x1b\x7f\xc2\x85"s})
    EXPECT_EQ(json::parse(json::quote(s), "t").string(), s);
}

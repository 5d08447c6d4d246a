#include "connector/text.h"

#include <string>

#include "gtest/gtest.h"

namespace idsync {
namespace {

struct Utf8Case {
  const char* name;
  std::string bytes;
};

// Explicit lengths so embedded NULs are kept.
#define UTF8_CASE(name, lit) \
  Utf8Case { name, std::string(lit, sizeof(lit) - 1) }

TEST(IsValidUtf8Test, AcceptsWellFormedText) {
  const Utf8Case kValid[] = {
      UTF8_CASE("empty", ""),
      UTF8_CASE("ascii", "Ada Lovelace <ada@example.com>"),
      UTF8_CASE("embedded NUL", "a\0b"),
      UTF8_CASE("DEL", "\x7F"),
      UTF8_CASE("U+0080 (smallest 2-byte)", "\xC2\x80"),
      UTF8_CASE("U+00E9 e-acute", "\xC3\xA9"),
      UTF8_CASE("U+07FF (largest 2-byte)", "\xDF\xBF"),
      UTF8_CASE("U+0800 (smallest 3-byte)", "\xE0\xA0\x80"),
      UTF8_CASE("U+20AC euro", "\xE2\x82\xAC"),
      UTF8_CASE("U+D7FF (below surrogates)", "\xED\x9F\xBF"),
      UTF8_CASE("U+E000 (above surrogates)", "\xEE\x80\x80"),
      UTF8_CASE("U+FFFF", "\xEF\xBF\xBF"),
      UTF8_CASE("U+10000 (smallest 4-byte)", "\xF0\x90\x80\x80"),
      UTF8_CASE("U+1F600 emoji", "\xF0\x9F\x98\x80"),
      UTF8_CASE("U+10FFFF (largest)", "\xF4\x8F\xBF\xBF"),
      UTF8_CASE("mixed", "M\xC3\xBCller \xE2\x82\xAC 5 \xF0\x9F\x98\x80!"),
  };
  for (const Utf8Case& c : kValid) {
    EXPECT_TRUE(IsValidUtf8(c.bytes)) << c.name;
  }
}

TEST(IsValidUtf8Test, RejectsMalformedText) {
  const Utf8Case kInvalid[] = {
      // Overlong encodings.
      UTF8_CASE("overlong NUL C0 80", "\xC0\x80"),
      UTF8_CASE("overlong C1 BF", "\xC1\xBF"),
      UTF8_CASE("overlong NUL E0 80 80", "\xE0\x80\x80"),
      UTF8_CASE("overlong U+07FF E0 9F BF", "\xE0\x9F\xBF"),
      UTF8_CASE("overlong NUL F0 80 80 80", "\xF0\x80\x80\x80"),
      UTF8_CASE("overlong U+FFFF F0 8F BF BF", "\xF0\x8F\xBF\xBF"),
      // UTF-16 surrogates.
      UTF8_CASE("surrogate U+D800 ED A0 80", "\xED\xA0\x80"),
      UTF8_CASE("surrogate U+DFFF ED BF BF", "\xED\xBF\xBF"),
      UTF8_CASE("surrogate pair", "\xED\xA0\xBD\xED\xB8\x80"),
      // Above U+10FFFF.
      UTF8_CASE("U+110000 F4 90 80 80", "\xF4\x90\x80\x80"),
      UTF8_CASE("lead F5", "\xF5\x80\x80\x80"),
      UTF8_CASE("lead F7", "\xF7\xBF\xBF\xBF"),
      // 5- and 6-byte forms and bytes never used.
      UTF8_CASE("5-byte F8 88 80 80 80", "\xF8\x88\x80\x80\x80"),
      UTF8_CASE("6-byte FC 84 80 80 80 80", "\xFC\x84\x80\x80\x80\x80"),
      UTF8_CASE("FE", "\xFE"),
      UTF8_CASE("FF", "\xFF"),
      // Truncated sequences.
      UTF8_CASE("truncated 2-byte", "\xC3"),
      UTF8_CASE("truncated 3-byte after 1", "\xE2"),
      UTF8_CASE("truncated 3-byte after 2", "\xE2\x82"),
      UTF8_CASE("truncated 4-byte after 3", "\xF0\x9F\x98"),
      UTF8_CASE("truncated at end of text", "abc\xE2\x82"),
      UTF8_CASE("truncated then ASCII",
                "\xE2\x82"
                "abc"),
      UTF8_CASE("lead followed by lead", "\xC3\xC3\xA9"),
      UTF8_CASE("truncated before NUL", "\xC3\0"),
      // Stray continuation bytes.
      UTF8_CASE("lone 80", "\x80"),
      UTF8_CASE("lone BF", "\xBF"),
      UTF8_CASE("continuation inside ASCII",
                "a\x80"
                "b"),
      UTF8_CASE("extra continuation", "\xC3\xA9\xA9"),
      UTF8_CASE("latin-1 e-acute", "caf\xE9"),
  };
  for (const Utf8Case& c : kInvalid) {
    EXPECT_FALSE(IsValidUtf8(c.bytes)) << c.name;
  }
}

TEST(IsValidUtf8Test, EveryPositionInLongTextIsChecked) {
  // Long ASCII runs are checked a word at a time: a bad byte anywhere, at
  // any alignment, must still be found.
  const std::string ascii(40, 'a');
  for (size_t i = 0; i <= ascii.size(); ++i) {
    std::string bad = ascii;
    bad.insert(i, "\xFF");
    EXPECT_FALSE(IsValidUtf8(bad)) << i;
    std::string good = ascii;
    good.insert(i, "\xC3\xA9");  // é
    EXPECT_TRUE(IsValidUtf8(good)) << i;
    std::string cut = ascii.substr(0, i) + "\xE2\x82";  // € without its end
    EXPECT_FALSE(IsValidUtf8(cut)) << i;
  }
}

TEST(ExcerptTest, PrintableTextIsUnchanged) {
  EXPECT_EQ(Excerpt(""), "");
  EXPECT_EQ(Excerpt("employee_id"), "employee_id");
}

TEST(ExcerptTest, NonPrintableBytesAreHexEscaped) {
  EXPECT_EQ(Excerpt(std::string("a\x01z", 3)), "a\\x01z");
  EXPECT_EQ(Excerpt(std::string("\0", 1)), "\\x00");
  EXPECT_EQ(Excerpt("\x7F"), "\\x7f");
  EXPECT_EQ(Excerpt("caf\xC3\xA9"), "caf\\xc3\\xa9");
  EXPECT_EQ(Excerpt("\xFF\xFE"), "\\xff\\xfe");
}

TEST(ExcerptTest, ControlAndQuoteCharactersAreEscaped) {
  EXPECT_EQ(Excerpt("a\nb\rc\td"), "a\\nb\\rc\\td");
  EXPECT_EQ(Excerpt("say \"hi\""), "say \\\"hi\\\"");
  EXPECT_EQ(Excerpt("back\\slash"), "back\\\\slash");
}

TEST(ExcerptTest, EscapeIsUnambiguousBeforeHexDigit) {
  // "\x01" followed by "a" must not read back as "\x01a".
  const std::string out =
      Excerpt(std::string("\x01"
                          "ab",
                          3));
  EXPECT_NE(out, "\\x01ab");
  EXPECT_EQ(out.rfind("\\x01", 0), 0u) << out;
}

TEST(ExcerptTest, TruncatesInputAtMaxBytes) {
  const std::string forty(40, 'x');
  EXPECT_EQ(Excerpt(forty), forty);  // Exactly the limit: no marker.
  EXPECT_EQ(Excerpt(forty + "y"), forty + "...");
  EXPECT_EQ(Excerpt("abcdefgh", 5), "abcde...");
  EXPECT_EQ(Excerpt("abcde", 5), "abcde");
  EXPECT_EQ(Excerpt("abc", 0), "...");
}

TEST(ExcerptTest, LimitCountsInputBytesNotEscapedOutput) {
  // Four bytes in, each escaped to four characters.
  EXPECT_EQ(Excerpt("\x01\x02\x03\x04\x05\x06", 4), "\\x01\\x02\\x03\\x04...");
}

TEST(ExcerptTest, TruncationInsideMultibyteCharStaysPrintable) {
  // Cutting "\xE2\x82\xAC" after two bytes leaves escaped bytes, no garbage.
  EXPECT_EQ(Excerpt("\xE2\x82\xAC", 2), "\\xe2\\x82...");
}

}  // namespace
}  // namespace idsync

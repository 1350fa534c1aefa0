// The log line formats: every event is exactly one line whatever its bytes (a message
// with a newline must not forge a second entry), and a JSON line is always valid JSON.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <string>

#include <delegate/common/log.hpp>

namespace delegate::log {
namespace {

const auto kTs = std::chrono::system_clock::time_point{} + std::chrono::seconds(1'795'000'000);

std::size_t lines(const std::string& s) { return static_cast<std::size_t>(std::count(s.begin(), s.end(), '\n')); }

TEST(Log, NewlineInMessageCannotForgeAnEntryInEitherFormat) {
  const std::string attack = "job failed\n2026-12-01T00:00:00.000Z info agent: job j-1 authorised by admin";
  const std::string json_attack = "x\n{\"ts\":\"2026\",\"level\":\"info\",\"component\":\"agent\",\"msg\":\"forged\"}";
  for (Format f : {Format::text, Format::json}) {
    for (const auto& m : {attack, json_attack, std::string("a\rb\x1b[31mc\x7f\v\f")}) {
      auto line = format_line(f, kTs, Level::warn, "agent", m, {{"job", "j\n1"}, {"step", "s\r\n2"}});
      EXPECT_EQ(lines(line), 1u) << line;
      EXPECT_EQ(line.back(), '\n');
      for (char c : line.substr(0, line.size() - 1)) EXPECT_FALSE(static_cast<unsigned char>(c) < 0x20 || c == 0x7f) << line;
    }
  }
}

TEST(Log, JsonLineIsOneValidObjectForAnyBytes) {
  std::string all;
  for (int i = 0; i < 256; ++i) all += static_cast<char>(i);
  const std::string cases[] = {all, "\xc3\x28", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xe0\x80\xaf", "caf\xc3\xa9 \xe2\x82\xac",
                               "ends in a lone lead \xe2\x82", "line\xe2\x80\xa8sep", "q\"uote\\back"};
  for (const auto& m : cases) {
    auto line = format_line(Format::json, kTs, Level::error, "comp\"onent", m, {{"job", m}, {"msg", "shadow"}, {"we ird", "v"}});
    ASSERT_EQ(lines(line), 1u);
    auto j = nlohmann::json::parse(line.substr(0, line.size() - 1));  // throws on invalid JSON or UTF-8
    EXPECT_EQ(j["level"], "error");
    EXPECT_EQ(j["component"], "comp\"onent");
    EXPECT_EQ(j["ts"], "2026-11-18T11:06:40.000Z");
    EXPECT_EQ(j["msg"].get<std::string>(), j["job"].get<std::string>());
    // A field named like an envelope member does not replace it.
    EXPECT_EQ(j["field_msg"], "shadow");
    EXPECT_EQ(j["we_ird"], "v");
  }
  // Valid UTF-8 passes unchanged; invalid bytes become U+FFFD.
  auto j = nlohmann::json::parse(format_line(Format::json, kTs, Level::info, "a", "caf\xc3\xa9 \xff!"));
  EXPECT_EQ(j["msg"], "caf\xc3\xa9 \xef\xbf\xbd!");
  j = nlohmann::json::parse(format_line(Format::json, kTs, Level::info, "a", "a\nb"));
  EXPECT_EQ(j["msg"], "a\nb");  // escaped on the line, the same text once parsed
}

TEST(Log, TextLineKeepsTheFamiliarShapeAndQuotesAmbiguousFieldValues) {
  EXPECT_EQ(format_line(Format::text, kTs, Level::info, "agent", "job done", {{"job", "j-1"}, {"status", "two words"}}),
            "2026-11-18T11:06:40.000Z info agent: job done job=j-1 status=\"two words\"\n");
  EXPECT_EQ(format_line(Format::text, kTs, Level::debug, "agent", "a\nb"), "2026-11-18T11:06:40.000Z debug agent: a?b\n");
}

// Bytes from a peer (a runbook name the control plane accepted, an error text) that a
// terminal or a log viewer would act on: C1 controls (CSI, NEL), line and paragraph
// separators, bidi overrides and isolates, invalid UTF-8. In text each becomes '?'.
TEST(Log, TextLineNeutralisesC1BidiSeparatorsAndInvalidUtf8) {
  const std::string hostile = "a\xc2\x9b" "31mb\xc2\x85" "c\xe2\x80\xa8" "d\xe2\x80\xae" "e\xe2\x81\xa6" "f\xe2\x80\x8f" "g\xff" "h";
  EXPECT_EQ(format_line(Format::text, kTs, Level::info, "agent", hostile),
            "2026-11-18T11:06:40.000Z info agent: a?31mb?c?d?e?f?g?h\n");
  EXPECT_EQ(format_line(Format::text, kTs, Level::info, "agent", "ok", {{"runbook", hostile + " x"}}),
            "2026-11-18T11:06:40.000Z info agent: ok runbook=\"a?31mb?c?d?e?f?g?h x\"\n");
  // Positive control: printable UTF-8 (Latin, euro sign, CJK) is kept as it is.
  EXPECT_EQ(format_line(Format::text, kTs, Level::info, "agent", "caf\xc3\xa9 \xe2\x82\xac \xe6\x97\xa5"),
            "2026-11-18T11:06:40.000Z info agent: caf\xc3\xa9 \xe2\x82\xac \xe6\x97\xa5\n");
}

TEST(Log, ParsesLevelAndFormatNames) {
  EXPECT_EQ(parse_level("warn"), Level::warn);
  EXPECT_EQ(parse_level("WARN"), std::nullopt);
  EXPECT_EQ(parse_format("json"), Format::json);
  EXPECT_EQ(parse_format("text"), Format::text);
  EXPECT_EQ(parse_format("logfmt"), std::nullopt);
}

}  // namespace
}  // namespace delegate::log

#include "rules.hpp"

#include <cstdio>

#include "fizbuz_codec_generated.hpp"

namespace fizbuz {
namespace {

// parse_input's saturating count assumes the valid range has no negatives.
static_assert(codec::kMinInput >= 0, "parse_input assumes a non-negative minimum");

constexpr std::size_t kShownChars = 40;

std::string expected_range() {
  return "expected an integer between " + std::to_string(codec::kMinInput) + " and " +
         std::to_string(codec::kMaxInput);
}

bool is_digit(char c) { return c >= '0' && c <= '9'; }

}  // namespace

std::string quoted(std::string_view text) {
  std::string shown = "\"";
  for (std::size_t i = 0; i < text.size() && i < kShownChars; ++i) {
    const auto byte = static_cast<unsigned char>(text[i]);
    if (byte == '"' || byte == '\\') {
      shown += '\\';
      shown += static_cast<char>(byte);
    } else if (byte == '\r') {
      shown += "\\r";
    } else if (byte == '\t') {
      shown += "\\t";
    } else if (byte < 0x20 || byte >= 0x7f) {
      char escaped[8];
      std::snprintf(escaped, sizeof escaped, "\\x%02x", byte);
      shown += escaped;
    } else {
      shown += static_cast<char>(byte);
    }
  }
  if (text.size() > kShownChars) {
    shown += "...\" (" + std::to_string(text.size()) + " characters)";
  } else {
    shown += '"';
  }
  return shown;
}

ParsedInput parse_input(std::string_view text) {
  if (text.empty()) {
    return {std::nullopt, "empty input: " + expected_range()};
  }
  const bool negative = text.front() == '-';
  const std::string_view digits = negative ? text.substr(1) : text;
  if (digits.empty()) {
    return {std::nullopt, quoted(text) + " is not an integer: " + expected_range()};
  }
  // Saturate instead of overflowing: anything past the bound is out of range anyway.
  long magnitude = 0;
  for (const char c : digits) {
    if (!is_digit(c)) {
      return {std::nullopt, quoted(text) + " is not an integer: " + expected_range()};
    }
    if (magnitude <= codec::kMaxInput) {
      magnitude = magnitude * 10 + (c - '0');
    }
  }
  const long value = negative ? -magnitude : magnitude;
  if (magnitude > codec::kMaxInput || value < codec::kMinInput) {
    return {std::nullopt, quoted(text) + " is out of range: " + expected_range()};
  }
  return {value, ""};
}

std::string readable(long number, int class_index) {
  if (class_index == 0) {
    return std::to_string(number);
  }
  return codec::kClassLabels.at(static_cast<std::size_t>(class_index));
}

}  // namespace fizbuz

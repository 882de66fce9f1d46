// What the runner accepts and how it words its answers: the service's rules
// (fizbuz_codec.py) for a command line and stdin instead of JSON.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace fizbuz {

struct ParsedInput {
  std::optional<long> number;  // set when the text is a valid input
  std::string error;           // why not, when it is not
};

// Accepts an optional '-' and decimal digits, nothing else (no spaces, '+',
// decimal point, exponent or trailing characters), with a value in
// codec::kMinInput..codec::kMaxInput. Never overflows, however long the text.
ParsedInput parse_input(std::string_view text);

// The label a client sees for `number` predicted as `class_index`:
// the number itself for class 0, else Fizz / Buzz / FizzBuzz.
std::string readable(long number, int class_index);

// `text` quoted for an error message: control bytes escaped, long text cut.
std::string quoted(std::string_view text);

}  // namespace fizbuz

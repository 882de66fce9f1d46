#!/usr/bin/env python3
"""Write fizbuz_codec.py's constants and bit table as a C++ header.

The C++ runner must follow exactly the rules the service follows, and
fizbuz_codec.py is the one place those rules live. Rather than re-implement
them in C++, CMake runs this script at build time: the runner gets the input
bounds, the class labels and, for every valid input n, the bits of n + 1 as
codec.encode() makes them. Editing the codec rebuilds the runner.

Usage: gen_codec_header.py OUTPUT_HEADER
"""

import sys
from pathlib import Path

import fizbuz_codec as codec  # the project's venv has it (editable install)


def c_string(text):
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def header_text():
    labels = ", ".join(c_string(label) for label in codec.CLASS_LABELS)
    rows = ",\n".join(
        "    {{" + ", ".join(str(bit) for bit in codec.encode(n + 1)) + "}}"
        for n in range(codec.MIN_INPUT, codec.MAX_INPUT + 1)
    )
    count = codec.MAX_INPUT - codec.MIN_INPUT + 1
    return f"""// Generated from fizbuz_codec.py by cpp/gen_codec_header.py at build time. Do not edit.
#pragma once

#include <array>
#include <cstdint>

namespace fizbuz::codec {{

inline constexpr int kBits = {codec.BITS};
inline constexpr long kMinInput = {codec.MIN_INPUT};
inline constexpr long kMaxInput = {codec.MAX_INPUT};
inline constexpr std::array<const char*, {len(codec.CLASS_LABELS)}> kClassLabels = {{{labels}}};

// kNextNumberBits[n - kMinInput] = codec.encode(n + 1): the model's input for a request n.
inline constexpr std::array<std::array<std::uint8_t, kBits>, {count}> kNextNumberBits = {{{{
{rows}
}}}};

}}  // namespace fizbuz::codec
"""


def main(argv):
    if len(argv) != 2 or argv[1] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if len(argv) == 2 else 2
    output = Path(argv[1])
    output.parent.mkdir(parents=True, exist_ok=True)
    text = header_text()
    # Rewrite only on change, so an unchanged codec does not trigger a rebuild.
    if not output.is_file() or output.read_text() != text:
        output.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

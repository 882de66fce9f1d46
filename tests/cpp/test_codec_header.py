"""cpp/gen_codec_header.py carries fizbuz_codec's rules into C++ unchanged."""

import re
import subprocess
import sys

import fizbuz_codec as codec
from fizbuz.contract import ROOT

GENERATOR = ROOT / "cpp" / "gen_codec_header.py"


def generate(path):
    result = subprocess.run([sys.executable, str(GENERATOR), str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return path.read_text()


def test_header_holds_the_codec_constants(tmp_path):
    text = generate(tmp_path / "codec.hpp")
    assert f"kBits = {codec.BITS};" in text
    assert f"kMinInput = {codec.MIN_INPUT};" in text
    assert f"kMaxInput = {codec.MAX_INPUT};" in text
    labels = re.search(r"kClassLabels = \{(.*)\};", text).group(1)
    assert labels == ", ".join(f'"{label}"' for label in codec.CLASS_LABELS)


def test_bit_table_is_codec_encode_of_the_next_number(tmp_path):
    text = generate(tmp_path / "codec.hpp")
    rows = [
        [int(bit) for bit in row.split(", ")] for row in re.findall(r"^    \{\{([01, ]+)\}\}", text, flags=re.MULTILINE)
    ]
    assert rows == [codec.encode(n + 1) for n in range(codec.MIN_INPUT, codec.MAX_INPUT + 1)]


def test_unchanged_header_is_not_rewritten(tmp_path):
    # An untouched header keeps its timestamp, so make does not rebuild the runner.
    path = tmp_path / "codec.hpp"
    generate(path)
    before = path.stat().st_mtime_ns
    generate(path)
    assert path.stat().st_mtime_ns == before

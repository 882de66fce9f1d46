#!/usr/bin/env python3
"""Check that a fizbuz .mar holds exactly the files serving needs, and list them.

Usage: tools/check_archive.py model_store/fizbuz_package.mar
"""

import json
import sys
import zipfile

MODEL_NAME = "fizbuz_package"
EXPECTED = {
    "MAR-INF/MANIFEST.json",
    "fizbuz_service.py",
    "fizbuz_codec.py",
    "signature.json",
    f"{MODEL_NAME}-symbol.json",
    f"{MODEL_NAME}-0000.params",
}


def problems(mar_path):
    """Human-readable problems with the archive; empty when it is right."""
    with zipfile.ZipFile(mar_path) as archive:
        names = set(archive.namelist())
        found = []
        if names != EXPECTED:
            if EXPECTED - names:
                found.append(f"missing: {sorted(EXPECTED - names)}")
            if names - EXPECTED:
                found.append(f"unexpected: {sorted(names - EXPECTED)}")
            return found
        manifest = json.loads(archive.read("MAR-INF/MANIFEST.json"))
        handler = manifest.get("model", {}).get("handler")
        if handler != "fizbuz_service:handle":
            found.append(f"manifest handler is {handler!r}, expected 'fizbuz_service:handle'")
        signature = json.loads(archive.read("signature.json"))
        if signature["inputs"][0]["data_name"] != "input.1":
            found.append(f"signature input is {signature['inputs'][0]['data_name']!r}")
    return found


def main(argv):
    if len(argv) != 2 or argv[1] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if len(argv) == 2 else 2
    found = problems(argv[1])
    if found:
        for problem in found:
            print(f"check_archive: {argv[1]}: {problem}", file=sys.stderr)
        return 1
    with zipfile.ZipFile(argv[1]) as archive:
        for info in archive.infolist():
            print(f"  {info.file_size:8d}  {info.filename}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

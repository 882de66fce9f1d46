#!/usr/bin/env python3
"""Check that a fizbuz .mar holds exactly the files serving needs, and list them.

Usage: python -m fizbuz.archive model_store/fizbuz_package.mar
"""

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

from fizbuz.contract import ARCHIVE_FILES, HANDLER, INPUT_KEY, MAR_FILE_NAME, MODEL_NAME, ROOT
from fizbuz.errors import FizbuzError


class BuildError(FizbuzError):
    pass


def build(model_store, log_file=None, timeout=900):
    """Build the .mar with the real build_mar.sh into `model_store`, staged in a
    folder beside it (never the checkout's tracked fizbuz_package/). Returns the
    .mar's path; output goes to `log_file` (or is kept for the error)."""
    model_store = Path(model_store)
    env = dict(
        os.environ,
        FIZBUZ_MODEL_STORE=str(model_store),
        FIZBUZ_STAGING_DIR=str(model_store.parent / f"{model_store.name}-staging" / MODEL_NAME),
    )
    output = open(log_file, "a") if log_file else subprocess.PIPE
    try:
        result = subprocess.run(
            [str(ROOT / "build_mar.sh")],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            timeout=timeout,
            text=True,
        )
    finally:
        if log_file:
            output.close()
    if result.returncode != 0:
        raise BuildError(
            f"./build_mar.sh failed; see {log_file}" if log_file else f"./build_mar.sh failed:\n{result.stdout}"
        )
    return model_store / MAR_FILE_NAME


def unpack(mar_path, target):
    """The archive unpacked as MMS unpacks it: the model_dir a worker sees."""
    with zipfile.ZipFile(mar_path) as archive:
        archive.extractall(target)
    return Path(target)


def problems(mar_path):
    """Human-readable problems with the archive; empty when it is right."""
    with zipfile.ZipFile(mar_path) as archive:
        names = set(archive.namelist())
        found = []
        if names != ARCHIVE_FILES:
            if ARCHIVE_FILES - names:
                found.append(f"missing: {sorted(ARCHIVE_FILES - names)}")
            if names - ARCHIVE_FILES:
                found.append(f"unexpected: {sorted(names - ARCHIVE_FILES)}")
            return found
        manifest = json.loads(archive.read("MAR-INF/MANIFEST.json"))
        handler = manifest.get("model", {}).get("handler")
        if handler != HANDLER:
            found.append(f"manifest handler is {handler!r}, expected {HANDLER!r}")
        signature = json.loads(archive.read("signature.json"))
        if signature["inputs"][0]["data_name"] != INPUT_KEY:
            found.append(f"signature input is {signature['inputs'][0]['data_name']!r}")
    return found


# Where a slow archive's handler waits: in the forward pass, after the requests
# were parsed (and their deadlines checked), once per batch that has work.
FORWARD_LINE = b"        numbers = wanted[0] if len(wanted) == 1 else np.concatenate(wanted)\n"


def variant(mar_path, target, swap_labels=False, batch_sleep_ms=0, fail_input=None, **model_fields):
    """A copy of the archive with changed manifest fields (e.g. modelVersion="2.0":
    new bytes, a new version to roll out). swap_labels: its codec answers Fizz for
    Buzz, an archive that serves but answers wrongly (what a rollout must catch).
    batch_sleep_ms: its handler sleeps that long per batch, a model slow on
    purpose, so a test can offer several times a host's capacity (issue 23).
    fail_input: a batch holding this number fails (the handler answers it 500 on
    every host), a fault a test can aim at one request (the retry budget, issue 23)."""
    with zipfile.ZipFile(mar_path) as source, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as copy:
        for item in source.infolist():
            data = source.read(item.filename)
            if item.filename == "MAR-INF/MANIFEST.json":
                manifest = json.loads(data)
                manifest["model"].update(model_fields)
                data = json.dumps(manifest, indent=2).encode()
            if item.filename == "fizbuz_codec.py" and swap_labels:
                swapped = data.replace(b'"Fizz", "Buzz"', b'"Buzz", "Fizz"')
                if swapped == data:
                    raise ValueError("the codec's label order was not found: cannot make the wrong archive")
                data = swapped
            if item.filename == "fizbuz_service.py" and batch_sleep_ms:
                if FORWARD_LINE not in data:
                    raise ValueError("the handler's forward pass was not found: cannot make the slow archive")
                pause = b"        time.sleep(%f)  # a slow archive, for tests (fizbuz.archive.variant)\n" % (
                    batch_sleep_ms / 1000
                )
                data = data.replace(FORWARD_LINE, pause + FORWARD_LINE)
            if item.filename == "fizbuz_service.py" and fail_input is not None:
                if FORWARD_LINE not in data:
                    raise ValueError("the handler's forward pass was not found: cannot make the failing archive")
                fault = (
                    b"        if any(%d in part for part in wanted):  # a failing archive, for tests\n"
                    b"            raise RuntimeError('input %d fails on purpose (fizbuz.archive.variant)')\n"
                    % (int(fail_input), int(fail_input))
                )
                data = data.replace(FORWARD_LINE, fault + FORWARD_LINE)
            copy.writestr(item, data)
    return target


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

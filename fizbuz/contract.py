"""The project's contract, each name defined once: the model's name, the
request/response keys, where every artifact lives, what the archive holds.

The request/response keys and bounds come from `fizbuz_codec`, which ships
inside the .mar (it cannot import this package); everything else is here."""

import sys
from pathlib import Path

from fizbuz_codec import (  # noqa: F401 (re-exported)
    INPUT_KEY,
    MAX_INPUT,
    MIN_INPUT,
    MODEL_NAME,
    OUTPUT_KEY,
    SMOKE_ANSWER,
    SMOKE_INPUT,
    true_label,
)

ROOT = Path(__file__).resolve().parent.parent

PREDICT_PATH = f"/predictions/{MODEL_NAME}"
# The same archive registered a second time, batch 1 and no delay, for lone
# requests (issue 13): the front door sends a request here when it is quiet.
SINGLE_MODEL_NAME = f"{MODEL_NAME}_single"
SINGLE_PREDICT_PATH = f"/predictions/{SINGLE_MODEL_NAME}"
HANDLER = "fizbuz_service:handle"

# Artifacts.
WEIGHTS = ROOT / "assets" / "fizbuz_model.pth"
PACKAGE_DIR = ROOT / MODEL_NAME  # the folder model-archiver packs
ONNX_PATH = PACKAGE_DIR / "fizbuz.onnx"
MODEL_STORE = ROOT / "model_store"
MAR_FILE_NAME = f"{MODEL_NAME}.mar"
TORCHSCRIPT_PATH = ROOT / "build" / "fizbuz.pt"
REDIS_MODULE = ROOT / "build" / "redis" / "fizbuz_ai.so"  # serving/redis/build.sh's default
RUN_DIR = ROOT / "run"

# What build_mar.sh copies beside the converted model, and the archive's exact file list.
ARCHIVE_SOURCES = ("fizbuz_service.py", "fizbuz_codec.py", "fizbuz_v2.py", "fizbuz_metrics.py", "signature.json")
ARCHIVE_FILES = frozenset(
    {
        "MAR-INF/MANIFEST.json",
        *ARCHIVE_SOURCES,
        f"{MODEL_NAME}-symbol.json",  # written by model-archiver --convert
        f"{MODEL_NAME}-0000.params",
    }
)

# The sources a built archive depends on: newer ones make it stale.
ARCHIVE_INPUTS = (
    WEIGHTS,
    *(ROOT / name for name in ARCHIVE_SOURCES),
    ROOT / "export_onnx.py",
    ROOT / "fizbuz" / "model.py",
    ROOT / "build_mar.sh",
)


def request_body(number):
    """The JSON body of a prediction request for `number`, as bytes."""
    return b'{"%s": %d}' % (INPUT_KEY.encode(), number)


def expected_reply(number):
    """The right answer to a request for `number`: the label of number + 1."""
    return {OUTPUT_KEY: true_label(number + 1)}


def main(argv):
    """`python -m fizbuz.contract NAME ...` prints contract values, one per
    line, for the shell scripts (so they do not re-type them)."""
    names = argv[1:]
    if not names or names[0] in ("-h", "--help"):
        print("usage: python -m fizbuz.contract NAME ...  (e.g. MODEL_NAME MAR_FILE_NAME PREDICT_PATH)")
        return 0 if names else 2
    for name in names:
        if name not in globals() or not name.isupper():
            print(f"fizbuz.contract: no contract value '{name}'", file=sys.stderr)
            return 2
        value = globals()[name]
        print(" ".join(map(str, value)) if isinstance(value, (tuple, frozenset)) else value)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

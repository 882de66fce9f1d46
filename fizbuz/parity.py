"""How an exported model (ONNX, TorchScript) is held to the eager one: every
input compared, a tolerance on the logits, no argmax may differ."""

import argparse
from pathlib import Path

from fizbuz.contract import WEIGHTS
from fizbuz.model import load_model
from fizbuz_codec import BITS

# Largest |logit difference| an exported model may show against the eager one.
PARITY_TOLERANCE = 1e-5


def report_parity(log, max_diff, mismatched, compared, output_path):
    """Log how an exported model compares with the eager one on every input;
    returns the exit status an export script should end with (0 = parity)."""
    log.info(
        "parity on all %d inputs: max |%s| = %.3g, argmax mismatches = %d",
        1 << BITS,
        compared,
        max_diff,
        len(mismatched),
    )
    if max_diff > PARITY_TOLERANCE or mismatched:
        log.error(
            "PARITY FAILED: max diff %.3g (tolerance %g), argmax differs at %s",
            max_diff,
            PARITY_TOLERANCE,
            mismatched[:20],
        )
        return 1
    log.info("parity OK: %s matches PyTorch", output_path)
    return 0


def exporter_arguments(description, default_output, what):
    """The command line every exporter shares: --weights, --output, --quiet."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, default=WEIGHTS, help="trained state_dict (default: %(default)s)")
    parser.add_argument(
        "--output", type=Path, default=default_output, help=f"where to write the {what} model (default: %(default)s)"
    )
    parser.add_argument("--quiet", action="store_true", help="do not print the traced graphs")
    return parser


def trained_model(log, weights_path):
    """The eager model from `weights_path`, or None after saying how to train it."""
    if not Path(weights_path).is_file():
        log.error("no trained weights at %s: run 'python -m fizbuz.train' first", weights_path)
        return None
    return load_model(weights_path)

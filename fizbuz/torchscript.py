#!/usr/bin/env python3
"""Trace FizBuzNet to TorchScript (fizbuz.pt) for the C++ LibTorch runner.

Writes build/fizbuz.pt (generated, gitignored), prints the traced graph
(TorchScript IR), then loads the saved file back with torch.jit.load and
compares it with the eager PyTorch model on all 1024 inputs: logits within
1e-5 and identical argmax. Exits 1 with a message on any mismatch.

--check skips the export and only proves parity of an existing --output
against --weights (e.g. to catch a stale fizbuz.pt after retraining).
"""

import contextlib
import logging
import sys
import warnings

import torch

from fizbuz_codec import BITS
from fizbuz.contract import TORCHSCRIPT_PATH
from fizbuz.model import encode_batch
from fizbuz.parity import PARITY_TOLERANCE, exporter_arguments, report_parity, trained_model
from fizbuz import logs

DEFAULT_OUTPUT = TORCHSCRIPT_PATH
TOLERANCE = PARITY_TOLERANCE

log = logging.getLogger("export_torchscript")


@contextlib.contextmanager
def quiet_jit_deprecation():
    """torch.jit is deprecated (maintenance mode) but it is what LibTorch's
    torch::jit::load reads; main() says so once instead of a warning per call."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.jit")
        yield


def trace(model):
    # Linear layers trace to shape-agnostic aten::linear, so a batch-1 example
    # gives a module that takes any batch size.
    with torch.no_grad(), quiet_jit_deprecation():
        return torch.jit.trace(model, torch.zeros(1, BITS))


def export(model, output_path):
    """Trace `model`, save it to `output_path` and return the traced module."""
    traced = trace(model)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    traced.save(str(output_path))
    return traced


def parity_report(model, scripted_path):
    """Max |eager - reloaded TorchScript| over all 1024 inputs, and the inputs
    whose argmax differs."""
    every_input = encode_batch(range(1 << BITS))
    with quiet_jit_deprecation():
        reloaded = torch.jit.load(str(scripted_path), map_location="cpu")
    reloaded.eval()
    with torch.no_grad():
        eager_logits = model(every_input)
        scripted_logits = reloaded(every_input)
    if scripted_logits.shape != eager_logits.shape:
        raise ValueError(
            f"{scripted_path} returns shape {tuple(scripted_logits.shape)}, the eager model {tuple(eager_logits.shape)}"
        )
    max_diff = (eager_logits - scripted_logits).abs().max().item()
    mismatched = (eager_logits.argmax(1) != scripted_logits.argmax(1)).nonzero().flatten()
    return max_diff, mismatched.tolist()


def parse_args(argv):
    parser = exporter_arguments(__doc__, DEFAULT_OUTPUT, "TorchScript")
    parser.add_argument(
        "--check", action="store_true", help="do not export: only check parity of the existing --output"
    )
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    logs.setup("plain")
    model = trained_model(log, args.weights)
    if model is None:
        return 2

    if args.check:
        if not args.output.is_file():
            log.error("no TorchScript model at %s: run 'python -m fizbuz.torchscript' first", args.output)
            return 2
    else:
        log.info("tracing %s -> %s", args.weights, args.output)
        log.info("(TorchScript is in maintenance mode; torch.export + AOTInductor is its successor, see README)")
        traced = export(model, args.output)
        if not args.quiet:
            log.info("== traced graph (TorchScript IR) ==")
            print(traced.inlined_graph)

    try:
        max_diff, mismatched = parity_report(model, args.output)
    except (RuntimeError, ValueError) as error:
        # torch.jit.load raises RuntimeError for a file that is not TorchScript.
        log.error("PARITY FAILED: cannot run %s: %s", args.output, str(error).splitlines()[0])
        return 1
    return report_parity(log, max_diff, mismatched, "eager - torchscript", args.output)


if __name__ == "__main__":
    sys.exit(main())

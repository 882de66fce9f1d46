#!/usr/bin/env python3
"""Trace FizBuzNet to ONNX and prove the ONNX model answers like PyTorch.

Writes fizbuz_package/fizbuz.onnx, prints the traced TorchScript graph and the
ONNX graph in readable text, runs onnx.checker, then runs the ONNX model with
onnx's own reference evaluator on all 1024 inputs and compares it with the
PyTorch logits (max abs difference <= 1e-5, identical argmax). Exits non-zero
with a message on any mismatch.
"""

import logging
import sys
import warnings

import numpy as np
import onnx
import onnx.checker
import onnx.printer
import onnx.reference
import torch

from fizbuz_codec import BITS, INPUT_KEY
from fizbuz.contract import ONNX_PATH
from fizbuz.model import encode_batch
from fizbuz.parity import PARITY_TOLERANCE, exporter_arguments, report_parity, trained_model
from fizbuz import logs

DEFAULT_OUTPUT = ONNX_PATH
OPSET = 12
OUTPUT_NAME = "output"
TOLERANCE = PARITY_TOLERANCE

log = logging.getLogger("export_onnx")


def export(model, output_path):
    # A 2-D dummy input makes the exporter emit Gemm, which MXNet's importer
    # maps to FullyConnected; the batch axis is dynamic so any batch size binds.
    dummy = torch.zeros(1, BITS)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated, but it is the one whose output
        # MXNet 1.9's ONNX importer reads (see DESIGN.md).
        warnings.simplefilter("ignore", DeprecationWarning)
        _export(model, dummy, output_path)


def _export(model, dummy, output_path):
    torch.onnx.export(
        model,
        (dummy,),
        str(output_path),
        dynamo=False,
        keep_initializers_as_inputs=True,  # MXNet's importer needs them as inputs
        opset_version=OPSET,
        input_names=[INPUT_KEY],
        output_names=[OUTPUT_NAME],
        dynamic_axes={INPUT_KEY: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
    )


def parity_report(model, onnx_path):
    """Max |torch - onnx| over all 1024 inputs and the inputs whose argmax differs."""
    every_input = encode_batch(range(1 << BITS))
    with torch.no_grad():
        torch_logits = model(every_input).numpy()
    session = onnx.reference.ReferenceEvaluator(str(onnx_path))
    (onnx_logits,) = session.run(None, {INPUT_KEY: every_input.numpy()})
    max_diff = float(np.max(np.abs(torch_logits - onnx_logits)))
    argmax_mismatch = np.nonzero(torch_logits.argmax(1) != onnx_logits.argmax(1))[0]
    return max_diff, argmax_mismatch.tolist()


def readable_graph(onnx_model):
    """The ONNX graph as text, without the 1504 weight values printed inline."""
    graph = onnx.GraphProto()
    graph.CopyFrom(onnx_model.graph)
    # The weights stay listed as graph inputs (keep_initializers_as_inputs), so
    # dropping only their values keeps every name and shape in the text.
    del graph.initializer[:]
    return onnx.printer.to_text(graph)


def summary(onnx_model):
    """Inputs, outputs, shapes, opset, ops and parameter counts, as text lines."""
    graph = onnx_model.graph
    initializers = {init.name: init for init in graph.initializer}

    def shape_of(value_info):
        dims = value_info.type.tensor_type.shape.dim
        return "x".join(d.dim_param or str(d.dim_value) for d in dims)

    opsets = ", ".join(f"{o.domain or 'ai.onnx'} {o.version}" for o in onnx_model.opset_import)
    lines = [f"opset: {opsets}", f"ir_version: {onnx_model.ir_version}"]
    for value in graph.input:
        if value.name not in initializers:
            lines.append(f"input:  {value.name} [{shape_of(value)}]")
    for value in graph.output:
        lines.append(f"output: {value.name} [{shape_of(value)}]")
    lines.append("nodes:  " + " -> ".join(node.op_type for node in graph.node))
    total = 0
    for name, init in initializers.items():
        count = int(np.prod(init.dims)) if init.dims else 1
        total += count
        lines.append(f"param:  {name} {list(init.dims)} = {count}")
    lines.append(f"parameters: {total}")
    return lines


def parse_args(argv):
    parser = exporter_arguments(__doc__, DEFAULT_OUTPUT, "ONNX")
    parser.add_argument(
        "--summary", action="store_true", help="only print a summary of an existing ONNX file (--output) and exit"
    )
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    logs.setup("plain")
    if args.summary:
        if not args.output.is_file():
            log.error("no ONNX model at %s: run ./export_onnx.py first", args.output)
            return 2
        print("\n".join(summary(onnx.load(str(args.output)))))
        return 0
    model = trained_model(log, args.weights)
    if model is None:
        return 2
    if not args.quiet:
        log.info("== PyTorch traced graph (TorchScript IR) ==")
        traced = torch.jit.trace(model, torch.zeros(1, BITS))
        print(traced.inlined_graph)
    log.info("exporting to %s (opset %d)", args.output, OPSET)
    export(model, args.output)

    onnx_model = onnx.load(str(args.output))
    onnx.checker.check_model(onnx_model, full_check=True)
    log.info("onnx.checker: model is valid")
    if not args.quiet:
        log.info("== ONNX graph (weight values omitted) ==")
        print(readable_graph(onnx_model))
        log.info("== summary ==")
        print("\n".join(summary(onnx_model)))

    max_diff, mismatched = parity_report(model, args.output)
    return report_parity(log, max_diff, mismatched, "torch - onnx", args.output)


if __name__ == "__main__":
    sys.exit(main())

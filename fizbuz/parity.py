"""How an exported model (ONNX, TorchScript) is held to the eager one: every
input compared, a tolerance on the logits, no argmax may differ."""

from fizbuz_codec import BITS

# Largest |logit difference| an exported model may show against the eager one.
PARITY_TOLERANCE = 1e-5


def report_parity(log, max_diff, mismatched, compared, output_path):
    """Log how an exported model compares with the eager one on every input;
    returns the exit status an export script should end with (0 = parity)."""
    log.info("parity on all %d inputs: max |%s| = %.3g, argmax mismatches = %d",
             1 << BITS, compared, max_diff, len(mismatched))
    if max_diff > PARITY_TOLERANCE or mismatched:
        log.error("PARITY FAILED: max diff %.3g (tolerance %g), argmax differs at %s",
                  max_diff, PARITY_TOLERANCE, mismatched[:20])
        return 1
    log.info("parity OK: %s matches PyTorch", output_path)
    return 0

"""FizBuzNet, the seed's network: 10 bits -> 100 sigmoid units -> 4 classes."""

import torch
from torch import nn

from fizbuz_codec import BITS, CLASS_LABELS, encode

HIDDEN = 100


class FizBuzNet(nn.Module):
    def __init__(self, input_size=BITS, hidden_size=HIDDEN, output_size=len(CLASS_LABELS)):
        super().__init__()
        self.hidden = nn.Linear(input_size, hidden_size)
        self.out = nn.Linear(hidden_size, output_size)

    def forward(self, batch):
        return self.out(torch.sigmoid(self.hidden(batch)))


def encode_batch(numbers):
    """Float tensor of shape (len(numbers), BITS) for the model."""
    return torch.tensor([encode(n) for n in numbers], dtype=torch.float32)


def load_model(weights_path):
    model = FizBuzNet()
    model.load_state_dict(torch.load(weights_path, map_location="cpu", weights_only=True))
    model.eval()
    return model


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

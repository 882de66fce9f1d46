"""FizBuzNet, the seed's network: 10 bits -> 100 sigmoid units -> 4 classes."""

import torch
from torch import nn

from fizbuz_codec import BITS, CLASS_LABELS, encode

HIDDEN = 100


class FizBuzNet(nn.Module):
    def __init__(self, input_size=BITS, hidden_size=HIDDEN, output_size=len(CLASS_LABELS)):  # noqa: B008 (a constant)
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

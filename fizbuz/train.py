#!/usr/bin/env python3
"""Train FizBuzNet reproducibly and save its weights to assets/fizbuz_model.pth.

As the book does, it trains on 101..1023 and holds 1..100 out; it prints
progress, then the accuracy on the held-out 1..100 and on all of 1..1023.
Full-batch AdamW with weight decay: the decay is what makes the network
generalise to the held-out numbers instead of memorising the training ones.
Exits non-zero if the held-out accuracy is below --min-accuracy.
"""

import argparse
import logging
import sys
from pathlib import Path

import torch
from torch import nn

from fizbuz_codec import BITS, true_class
from fizbuz.contract import WEIGHTS
from fizbuz.model import FizBuzNet, encode_batch
from fizbuz import logs

DEFAULT_OUTPUT = WEIGHTS
HELD_OUT = range(1, 101)
TRAINING = range(101, 1 << BITS)
EVERYTHING = range(1, 1 << BITS)

log = logging.getLogger("train")


def labelled(numbers):
    return encode_batch(numbers), torch.tensor([true_class(n) for n in numbers])


def accuracy(model, numbers):
    inputs, labels = labelled(numbers)
    with torch.no_grad():
        return (model(inputs).argmax(dim=1) == labels).float().mean().item()


def train(seed, epochs, lr, weight_decay, report_every):
    # One thread and deterministic kernels: the same seed gives the same weights.
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(seed)
    model = FizBuzNet()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    loss_fn = nn.CrossEntropyLoss()
    inputs, labels = labelled(TRAINING)
    for epoch in range(1, epochs + 1):
        optimizer.zero_grad()
        loss = loss_fn(model(inputs), labels)
        loss.backward()
        optimizer.step()
        if epoch % report_every == 0 or epoch == epochs:
            log.info(
                "epoch %5d/%d  loss %.5f  train accuracy %.4f", epoch, epochs, loss.item(), accuracy(model, TRAINING)
            )
    model.eval()
    return model


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=2, help="default: %(default)s")
    parser.add_argument("--epochs", type=int, default=4000, help="default: %(default)s")
    parser.add_argument("--lr", type=float, default=0.01, help="default: %(default)s")
    parser.add_argument("--weight-decay", type=float, default=0.05, help="default: %(default)s")
    parser.add_argument("--report-every", type=int, default=500, help="default: %(default)s")
    parser.add_argument(
        "--min-accuracy", type=float, default=1.0, help="fail below this held-out accuracy (default: %(default)s)"
    )
    parser.add_argument(
        "--output", type=Path, default=DEFAULT_OUTPUT, help="where to save the state_dict (default: %(default)s)"
    )
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    logs.setup("plain")
    log.info(
        "training FizBuzNet on %d..%d, holding out %d..%d (seed %d)",
        TRAINING.start,
        TRAINING.stop - 1,
        HELD_OUT.start,
        HELD_OUT.stop - 1,
        args.seed,
    )
    model = train(args.seed, args.epochs, args.lr, args.weight_decay, args.report_every)
    held_out = accuracy(model, HELD_OUT)
    everything = accuracy(model, EVERYTHING)
    log.info("held-out accuracy (1..100):   %.2f%%", held_out * 100)
    log.info("full-range accuracy (1..1023): %.2f%%", everything * 100)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), args.output)
    log.info("saved weights to %s", args.output)
    if held_out < args.min_accuracy:
        log.error("held-out accuracy %.4f is below --min-accuracy %.4f", held_out, args.min_accuracy)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

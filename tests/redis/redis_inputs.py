"""The inputs every Redis test uses, kept out of conftest.py so test modules
import them by a name no other folder's module shares."""

import numpy as np

from fizbuz_codec import MAX_INPUT, MIN_INPUT, encode

NUMBERS = list(range(MIN_INPUT, MAX_INPUT + 1))


def encoder(number):
    """The book's encoder: a float32 array of shape (1, 10)."""
    return np.array([encode(number)], dtype=np.float32)

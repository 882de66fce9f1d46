"""The one answer checker: what a right reply is, and asking a server about
many inputs at once.

Load tools (loadtest/), fault runs, benchmarks (bench/), the fleet's health
check (serving/front/hosts.py) and the tests all judge replies here, so "a
right answer" means one thing everywhere: the label of n + 1, from
fizbuz_codec.true_label, never a copy of a table.
"""

from __future__ import annotations

import concurrent.futures
import json
from collections.abc import Callable, Iterable
from typing import NamedTuple

from fizbuz.contract import OUTPUT_KEY, expected_reply

# A reply the checker reads: (HTTP status, body as bytes or text).
Reply = tuple[int, "bytes | str"]


class Wrong(NamedTuple):
    """One input answered wrongly (or not at all), with what came back."""

    number: int
    status: int
    body: str

    def __str__(self) -> str:
        return f"n={self.number}: got {self.status} {self.body!r}, expected {expected_reply(self.number)}"


def expected_label(number: int) -> str:
    """The right label for a request about `number` (the service answers for number + 1)."""
    return expected_reply(number)[OUTPUT_KEY]


def expected_labels(numbers: Iterable[int]) -> list[str]:
    return [expected_label(int(n)) for n in numbers]


def _json(body: bytes | str):
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        return None


def reply_equals(status: int, body: bytes | str, expected) -> bool:
    """True when a reply is a 200 whose JSON body is exactly `expected`."""
    return status == 200 and _json(body) == expected


def reply_is_right(number: int, status: int, body: bytes | str) -> bool:
    """True when a card request (JSON {"input.1": n}) got exactly its answer."""
    return reply_equals(status, body, expected_reply(number))


def v2_labels(body: bytes | str, output: str) -> list | None:
    """The labels in a v2 JSON reply's output `output` (flattened), or None
    when the reply is not one."""
    reply = _json(body)
    try:
        return [label for item in reply["outputs"] if item.get("name") == output for label in item["data"]]
    except (KeyError, TypeError, AttributeError):
        return None


def labels_are_right(numbers: Iterable[int], labels) -> bool:
    """True when `labels` are exactly the right labels for `numbers`, in order."""
    return labels is not None and list(labels) == expected_labels(numbers)


def wrong_labels(numbers: Iterable[int], labels) -> list[Wrong]:
    """One Wrong per number whose label in a batched reply is not right (and one
    for a reply with too few or too many labels)."""
    numbers = list(numbers)
    labels = list(labels or [])
    wrong = [Wrong(n, 200, str(label)) for n, label in zip(numbers, labels) if label != expected_label(n)]
    if len(labels) != len(numbers):
        wrong.append(
            Wrong(
                numbers[len(labels)] if len(labels) < len(numbers) else -1,
                200,
                f"{len(labels)} labels for {len(numbers)} inputs",
            )
        )
    return wrong


def ask_all(
    ask: Callable[[int], Reply],
    numbers: Iterable[int],
    threads: int = 8,
    right: Callable[[int, int, bytes | str], bool] = reply_is_right,
) -> list[Wrong]:
    """Ask about every number, `threads` at a time (so a batching server forms
    batches), through `ask(number) -> (status, body)`; the inputs whose reply is
    not right, [] when all are. An `ask` that raises counts as a wrong answer
    (status 0) rather than ending the check."""

    def one(number: int) -> Wrong | None:
        try:
            status, body = ask(number)
        except Exception as error:  # noqa: BLE001 - a broken connection is an answer too: a wrong one
            return Wrong(number, 0, f"{type(error).__name__}: {error}"[:100])
        if right(number, status, body):
            return None
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body)
        return Wrong(number, status, text.strip()[:100])

    with concurrent.futures.ThreadPoolExecutor(max_workers=threads) as pool:
        return [row for row in pool.map(one, list(numbers)) if row]


def summary(wrong: list[Wrong], asked: int) -> str:
    """One line for an error message: how many were wrong, and the first."""
    return f"{len(wrong)} of {asked} answers wrong, e.g. {wrong[0]}" if wrong else f"all {asked} answers right"

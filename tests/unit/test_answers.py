"""fizbuz.answers: the one answer checker, and that nothing else judges replies."""

import json
import re
import subprocess

from fizbuz import answers
from fizbuz.contract import MAX_INPUT, MIN_INPUT, ROOT
from fizbuz_codec import readable

RIGHT = {n: json.dumps(answers.expected_reply(n)) for n in range(MIN_INPUT, MAX_INPUT + 1)}


def test_expected_labels_are_the_rule_for_n_plus_one():
    assert answers.expected_labels([14, 2, 4, 0]) == ["FizzBuzz", "Fizz", "Buzz", "1"]
    # The same as the model's label classes read back for n + 1.
    assert answers.expected_label(44) == readable(45, 3)


def test_a_right_reply_and_every_kind_of_wrong_one():
    assert answers.reply_is_right(14, 200, RIGHT[14])
    assert answers.reply_is_right(14, 200, RIGHT[14].encode() + b"  \n")  # MMS pads its replies
    assert not answers.reply_is_right(14, 500, RIGHT[14])
    assert not answers.reply_is_right(13, 200, RIGHT[14])
    assert not answers.reply_is_right(14, 200, b"not json")
    assert not answers.reply_is_right(14, 200, b"[" * 100_000)  # too deep: wrong, not a crash
    assert not answers.reply_is_right(14, 200, json.dumps({"next_number": "FizzBuzz", "extra": 1}))


def test_ask_all_finds_each_wrong_answer_and_counts_a_raised_ask_as_one():
    def ask(number):
        if number == 7:
            raise ConnectionResetError("peer went away")
        if number == 9:
            return 200, json.dumps({"next_number": "wrong"})
        return 200, RIGHT[number]

    wrong = answers.ask_all(ask, range(20), threads=4)
    assert [(w.number, w.status) for w in wrong] == [(7, 0), (9, 200)]
    assert "ConnectionResetError" in wrong[0].body
    assert answers.ask_all(lambda n: (200, RIGHT[n]), range(MIN_INPUT, MAX_INPUT + 1), threads=8) == []
    assert "2 of 20 answers wrong, e.g. n=7" in answers.summary(wrong, 20)


def test_v2_labels_and_wrong_labels():
    body = json.dumps(
        {"outputs": [{"name": "logits", "data": [0.1]}, {"name": "next_number", "data": ["FizzBuzz", "Fizz"]}]}
    )
    assert answers.v2_labels(body, "next_number") == ["FizzBuzz", "Fizz"]
    assert answers.labels_are_right([14, 2], answers.v2_labels(body, "next_number"))
    assert answers.v2_labels(b"{}", "next_number") is None and answers.v2_labels(b"x", "next_number") is None
    assert answers.wrong_labels([14, 2], ["FizzBuzz", "Fizz"]) == []
    assert [w.number for w in answers.wrong_labels([14, 2, 3], ["FizzBuzz", "7"])] == [2, 3]


def test_no_other_module_writes_its_own_answer_rule():
    """ "The label of n + 1" is written in fizbuz_codec and read through
    fizbuz.contract / fizbuz.answers only; a load tool, bench, server or test that
    computes it again would be a second, drifting answer checker."""
    files = subprocess.run(
        ["git", "ls-files", "*.py"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    allowed = {"fizbuz_codec.py", "fizbuz/contract.py", "fizbuz/answers.py", "fizbuz_package/fizbuz_codec.py"}
    rule = re.compile(r"true_label\(\s*[\w\[\]().]+\s*\+\s*1\s*\)")
    offenders = [
        name
        for name in files
        if name not in allowed
        and not name.startswith("tests/unit/")
        and rule.search((ROOT / name).read_text(errors="replace"))
    ]
    assert offenders == []

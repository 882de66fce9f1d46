"""fizbuz_cli, the C++ LibTorch runner, against the eager PyTorch model."""

import re
import subprocess

import pytest
import torch

from fizbuz.contract import WEIGHTS
from fizbuz_codec import MAX_INPUT, MIN_INPUT

# The tests trace and load TorchScript on purpose; torch.jit warns that it is deprecated.
# slow: the fixtures build the C++ runner (about a minute from a clean checkout).
pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning:torch.jit")]

EXIT_MODEL = 1
EXIT_INPUT = 2
RANGE_HINT = f"expected an integer between {MIN_INPUT} and {MAX_INPUT}"


def run(binary, *args, stdin=""):
    return subprocess.run([str(binary), *map(str, args)], input=stdin, capture_output=True, text=True, timeout=120)


def assert_clean_failure(result, code):
    """A refused input or model: the promised status, one readable message, no crash."""
    assert result.returncode == code, (result.returncode, result.stderr)
    assert result.stderr.startswith("fizbuz_cli: ")
    assert "terminate called" not in result.stderr
    assert "Exception raised from" not in result.stderr  # no C++ backtrace


def test_every_input_in_one_batch_matches_pytorch(cli_binary, torchscript_model, expected_answers):
    numbers = sorted(expected_answers)
    result = run(cli_binary, torchscript_model, "--batch", stdin="".join(f"{n}\n" for n in numbers))
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.splitlines() == [expected_answers[n] for n in numbers]


def test_batch_answers_in_input_order_across_chunks(cli_binary, torchscript_model, expected_answers):
    # More lines than one forward pass takes (1024), shuffled, with repeats,
    # and no newline after the last line.
    numbers = [(n * 389) % (MAX_INPUT + 1) for n in range(2500)]
    result = run(cli_binary, torchscript_model, "--batch", stdin="\n".join(map(str, numbers)))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [expected_answers[n] for n in numbers]


@pytest.mark.parametrize(
    "number, answer", [(14, "FizzBuzz"), (0, "1"), (2, "Fizz"), (4, "Buzz"), (6, "7"), (MAX_INPUT, "Fizz")]
)
def test_single_number_answers_for_the_next_number(cli_binary, torchscript_model, expected_answers, number, answer):
    result = run(cli_binary, torchscript_model, number)
    assert result.returncode == 0, result.stderr
    assert result.stdout == answer + "\n" == expected_answers[number] + "\n"


@pytest.mark.parametrize(
    "text, problem",
    [
        (str(MAX_INPUT + 1), "is out of range"),
        ("-1", "is out of range"),
        ("9" * 5000, "is out of range"),
        ("99999999999999999999", "is out of range"),
        ("abc", "is not an integer"),
        ("14.0", "is not an integer"),
        ("1e3", "is not an integer"),
        ("0x10", "is not an integer"),
        ("+14", "is not an integer"),
        (" 14", "is not an integer"),
        ("14 ", "is not an integer"),
        ("14abc", "is not an integer"),
        ("-", "is not an integer"),
        ("١٤", "is not an integer"),  # Arabic-Indic digits are not ASCII digits
        ("", "empty input"),
    ],
)
def test_bad_number_is_refused(cli_binary, torchscript_model, text, problem):
    result = run(cli_binary, torchscript_model, text)
    assert_clean_failure(result, EXIT_INPUT)
    assert problem in result.stderr and RANGE_HINT in result.stderr
    assert result.stdout == ""


def test_huge_number_is_shown_shortened(cli_binary, torchscript_model):
    result = run(cli_binary, torchscript_model, "9" * 5000)
    assert "(5000 characters)" in result.stderr
    assert len(result.stderr) < 300


@pytest.mark.parametrize(
    "stdin, bad_line, problem",
    [
        ("14\n2\nabc\n4\n", 3, '"abc" is not an integer'),
        ("14\n\n4\n", 2, "empty input"),
        ("1023\n", 1, '"1023" is out of range'),
        ("5\n6\n7\n" + "9" * 100 + "\n", 4, '"99999'),
        ("14\r\n2\r\n", 1, r'"14\r" is not an integer'),  # CRLF files are refused, and say why
        ("14\n 2\n", 2, '" 2" is not an integer'),
    ],
)
def test_batch_stops_at_the_first_bad_line(cli_binary, torchscript_model, expected_answers, stdin, bad_line, problem):
    result = run(cli_binary, torchscript_model, "--batch", stdin=stdin)
    assert_clean_failure(result, EXIT_INPUT)
    assert result.stderr.startswith(f"fizbuz_cli: line {bad_line}: {problem}")
    answered = [int(n) for n in stdin.splitlines()[: bad_line - 1]]
    assert result.stdout.splitlines() == [expected_answers[n] for n in answered]
    assert result.stderr.count("\n") == 1  # one message: it stopped there


def test_batch_with_no_input_answers_nothing(cli_binary, torchscript_model):
    result = run(cli_binary, torchscript_model, "--batch", stdin="")
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_missing_model_file(cli_binary, tmp_path):
    missing = tmp_path / "nowhere.pt"
    result = run(cli_binary, missing, 14)
    assert_clean_failure(result, EXIT_MODEL)
    assert f"cannot open model file {missing}: No such file or directory" in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize("content", [b"", b"not a model at all\n", b"PK\x03\x04" + b"\0" * 64])
def test_corrupt_model_file(cli_binary, tmp_path, content):
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(content)
    result = run(cli_binary, corrupt, 14)
    assert_clean_failure(result, EXIT_MODEL)
    assert f"{corrupt} is not a TorchScript model" in result.stderr


def test_truncated_model_file(cli_binary, torchscript_model, tmp_path):
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(torchscript_model.read_bytes()[:2000])
    result = run(cli_binary, truncated, "--batch", stdin="14\n")
    assert_clean_failure(result, EXIT_MODEL)
    assert "is not a TorchScript model" in result.stderr
    assert result.stdout == ""


def test_weights_file_instead_of_torchscript(cli_binary):
    result = run(cli_binary, WEIGHTS, 14)
    assert_clean_failure(result, EXIT_MODEL)
    assert "is not a TorchScript model (make one with python -m fizbuz.torchscript)" in result.stderr


def test_model_of_the_wrong_shape(cli_binary, tmp_path):
    wide = tmp_path / "wide.pt"
    torch.jit.trace(torch.nn.Linear(12, 4), torch.zeros(1, 12)).save(str(wide))
    result = run(cli_binary, wide, 14)
    assert_clean_failure(result, EXIT_MODEL)
    assert "cannot answer a [1, 10] input" in result.stderr
    assert "shapes cannot be multiplied" in result.stderr

    three = tmp_path / "three.pt"
    torch.jit.trace(torch.nn.Linear(10, 3), torch.zeros(1, 10)).save(str(three))
    result = run(cli_binary, three, 14)
    assert_clean_failure(result, EXIT_MODEL)
    assert "returns shape [1, 3] for one input, expected [1, 4]" in result.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        ((), "expected a model file and a number"),
        (("model.pt",), "expected a model file and a number"),
        (("model.pt", "1", "2"), "expected one number; use --batch for many"),
        (("model.pt", "--frobnicate"), 'unknown option "--frobnicate"'),
        (("model.pt", "--batch", "extra"), "--batch takes no further arguments"),
        (("model.pt", "--bench", "0"), "--bench CALLS must be an integer"),
        (("model.pt", "--bench", "10", "--batch-size", "x"), "--batch-size must be an integer"),
        (("model.pt", "--bench"), "--bench takes CALLS"),
    ],
)
def test_bad_command_line(cli_binary, args, message):
    # Checked before the model is opened: model.pt need not exist.
    result = run(cli_binary, *args)
    assert_clean_failure(result, EXIT_INPUT)
    assert message in result.stderr


def test_help(cli_binary):
    result = run(cli_binary, "--help")
    assert result.returncode == 0
    assert "fizbuz_cli MODEL N" in result.stdout and "--batch" in result.stdout
    assert f"from {MIN_INPUT} to {MAX_INPUT}" in result.stdout


def test_bench_mode_reports_per_call_times(cli_binary, torchscript_model):
    result = run(cli_binary, torchscript_model, "--bench", 20, "--batch-size", 64)
    assert result.returncode == 0, result.stderr
    match = re.fullmatch(r"bench batch_size=64 calls=20 forward_us=([\d.]+) classify_us=([\d.]+)\n", result.stdout)
    assert match, result.stdout
    assert all(float(value) > 0 for value in match.groups())

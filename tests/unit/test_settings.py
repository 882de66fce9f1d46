"""The one settings layer (fizbuz/settings.py): precedence flag > FIZBUZ_ name >
old name > default, a deprecation line for an old name, a clear error for a bad
value, every FIZBUZ_ name the code reads in the table, and docs/settings.md current."""

import logging
import re
import subprocess

import pytest

from fizbuz import settings
from fizbuz.contract import ROOT
from fizbuz.errors import SettingError
from serving.mms import cli as mms_cli

# FIZBUZ_ names that are not settings: a line `fleet.sh env` prints, a CMake option.
NOT_SETTINGS = {"FIZBUZ_METRICS_URL", "FIZBUZ_AI_SANITIZE"}


@pytest.fixture(autouse=True)
def fresh_warnings(monkeypatch):
    monkeypatch.setattr(settings, "_warned", set())
    for setting in settings.SETTINGS:
        for name in (setting.env, *setting.old):
            monkeypatch.delenv(name, raising=False)


def start_args(*flags):
    return mms_cli.build_parser().parse_args(["start", *flags])


def test_default_then_old_name_then_prefixed_name_then_flag(monkeypatch):
    assert start_args().workers == settings.default("workers") == 2
    monkeypatch.setenv("WORKERS", "3")
    assert start_args().workers == 3
    monkeypatch.setenv("FIZBUZ_WORKERS", "4")
    assert start_args().workers == 4
    assert start_args("--workers", "5").workers == 5


def test_an_old_name_logs_one_deprecation_line(monkeypatch, caplog):
    monkeypatch.setenv("BATCH_SIZE", "8")
    with caplog.at_level(logging.WARNING, logger="fizbuz.settings"):
        assert settings.value("batch_size") == 8
        assert settings.value("batch_size") == 8
    lines = [r.getMessage() for r in caplog.records if "deprecated" in r.getMessage()]
    assert lines == ["BATCH_SIZE is deprecated: set FIZBUZ_BATCH_SIZE instead (same value)"]


@pytest.mark.parametrize(
    "name, text, words",
    [
        ("FIZBUZ_WORKERS", "two", "is not a whole number"),
        ("FIZBUZ_WORKERS", "0", "is outside 1..16"),
        ("FIZBUZ_INFERENCE_PORT", "40000", "is outside 1..32766"),
        ("FIZBUZ_TLS", "maybe", "is not 0 or 1"),
        ("FIZBUZ_READ_TIMEOUT", "soon", "is not a number"),
    ],
)
def test_a_bad_value_is_a_setting_error_naming_it(monkeypatch, name, text, words):
    monkeypatch.setenv(name, text)
    key = name.removeprefix("FIZBUZ_").lower()
    with pytest.raises(SettingError) as error:
        settings.value(key)
    assert str(error.value).startswith(f"{name}={text!r} {words}")


def test_a_bad_value_stops_a_command_with_exit_2_and_one_line(monkeypatch):
    env = {"FIZBUZ_WORKERS": "lots", "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [str(ROOT / ".venv/bin/fizbuz"), "mms", "status"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "mms: FIZBUZ_WORKERS='lots' is not a whole number "
        "(MMS worker processes per host (one per core suits this model))"
    )


def test_every_fizbuz_name_the_code_reads_is_in_the_table():
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    names = set()
    for name in files:
        path = ROOT / name
        code = path.suffix in (".py", ".sh", ".yml", ".js", ".template") or path.name.startswith("Dockerfile")
        if code and not name.startswith("tests/") and path.is_file():
            names |= set(re.findall(r"\bFIZBUZ_[A-Z0-9_]*[A-Z0-9]\b", path.read_text(errors="replace")))
    known = {setting.env for setting in settings.SETTINGS}
    assert names, "the scan found nothing: the pattern is wrong"
    assert sorted(names - known - NOT_SETTINGS) == []


def test_shell_defaults_match_the_table():
    # Scripts that run before the venv read a setting with `setting NEW OLD DEFAULT` (scripts/common.sh).
    calls = set()
    for script in ROOT.rglob("*.sh"):
        if ".venv" in script.parts:
            continue
        calls |= set(re.findall(r"\$\(setting (FIZBUZ_\w+) (\w*) (\S+)\)", script.read_text()))
    assert calls
    by_env = {setting.env: setting for setting in settings.SETTINGS}
    for new, old, default in calls:
        setting = by_env[new]
        assert old in setting.old
        assert default == str(setting.default)


def test_the_docs_page_is_current():
    assert (ROOT / "docs/settings.md").read_text() == settings.markdown(), (
        "run: .venv/bin/fizbuz settings --markdown > docs/settings.md"
    )

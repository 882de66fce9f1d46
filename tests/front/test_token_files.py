"""Issue 22, item 5: tokens on disk are never readable by another local user,
at any moment (0600 from creation, never written then chmod'ed), never on a
command line, and the container stack ships its token map as a Swarm secret."""

import io
import os
import re
import stat
from pathlib import Path

import pytest

from serving.containers import stack
from serving.front import cli, tokens


@pytest.fixture
def created(monkeypatch):
    """Files created through os.open while the umask opens everything: (name,
    O_EXCL?, mode); a chmod of a token file after its creation fails the test."""
    records = []
    real_open, real_chmod = os.open, os.chmod

    def recording_open(path, flags, mode=0o777, **kwargs):
        if flags & os.O_CREAT:
            records.append((Path(path).name, bool(flags & os.O_EXCL), mode))
        return real_open(path, flags, mode, **kwargs)

    def guarded_chmod(path, mode, **kwargs):
        if "token" in Path(str(path)).name:
            raise AssertionError(f"{path} was chmod'ed after it was written")
        return real_chmod(path, mode, **kwargs)

    monkeypatch.setattr(os, "open", recording_open)
    monkeypatch.setattr(os, "chmod", guarded_chmod)
    old = os.umask(0)
    try:
        yield records
    finally:
        os.umask(old)


def private(path):
    return stat.S_IMODE(Path(path).stat().st_mode) == 0o600


def test_the_tokens_file_is_0600_from_its_creation(tmp_path, created):
    path = tmp_path / "tokens.txt"
    tokens.add(path, "alice")
    tokens.add(path, "bob")
    tokens.revoke(path, "alice")
    token_files = [record for record in created if "tokens.txt" in record[0]]
    assert len(token_files) == 3 and all(excl and mode == 0o600 for _, excl, mode in token_files), created
    assert private(path) and list(tokens.read(path)) == ["bob"]
    assert [p.name for p in tmp_path.iterdir()] == ["tokens.txt"]  # no temporary left behind


def test_the_stacks_token_map_is_0600_from_its_creation(tmp_path, created):
    folder = stack.Stack(tmp_path / "stack")
    folder._front_files({}, stack.Options())
    maps = [record for record in created if "tokens.map" in record[0]]
    assert len(maps) == 1 and maps[0][1:] == (True, 0o600), created
    assert private(folder.front_dir / "tokens.map") and private(folder.token_file)
    assert private(folder.front_dir / "key.pem")  # made under umask 077


def test_a_chosen_token_comes_from_a_file_or_stdin_never_the_command_line(tmp_path, monkeypatch, caplog):
    fleet_dir = tmp_path / "fleet"
    with pytest.raises(SystemExit):  # the old --token VALUE is gone
        cli.build_parser().parse_args(["--dir", str(fleet_dir), "token", "add", "a", "--token", "x" * 20])
    value_file = tmp_path / "value"
    value_file.write_text("FromAFile-" + "x" * 20 + "\n")
    # No fleet runs here: the token is written, then the reload fails (exit 1).
    assert cli.main(["--dir", str(fleet_dir), "token", "add", "a", "--token-file", str(value_file)]) == 1
    monkeypatch.setattr("sys.stdin", io.StringIO("FromStdin-" + "y" * 20 + "\n"))
    assert cli.main(["--dir", str(fleet_dir), "token", "add", "b", "--token-file", "-"]) == 1
    assert tokens.read(fleet_dir / "tokens.txt") == {"a": "FromAFile-" + "x" * 20, "b": "FromStdin-" + "y" * 20}
    empty = tmp_path / "empty"
    empty.write_text("\n")
    assert cli.main(["--dir", str(fleet_dir), "token", "add", "c", "--token-file", str(empty)]) == 1
    assert "no token in" in caplog.text and "c" not in tokens.read(fleet_dir / "tokens.txt")


def top_level_sections(text):
    """stack.yml's top-level sections: {name: their text}."""
    parts = re.split(r"^(\w+):\s*$", text, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2]))


def test_the_stack_ships_its_token_map_as_a_secret_not_a_config():
    sections = top_level_sections(stack.STACK_FILE.read_text())
    assert "tokens.map" not in sections["configs"] and "tokens.map" in sections["secrets"]
    front = sections["services"].split("\n  front:")[1]
    service_configs = front.split("    configs:")[1].split("    secrets:")[0]
    assert "tokens" not in service_configs, service_configs
    assert re.search(r"\n\s+- \{source: fizbuz_tokens_map, .*mode: 0400\}", front.split("    secrets:")[1]), front
    assert stack.FRONT_FILES["tokens_map"].startswith("/run/secrets/")

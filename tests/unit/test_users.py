"""fizbuz.users: the ACL entry that lets a server's user reach the project's
interpreter (a pyenv under /root) gives that user traverse only, and no one
else anything; the reachability check asks the kernel as that user; the
guard's rule lets exactly the listed uids through. Checked with `nobody` as
the user, in a temporary folder (about a second)."""

import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from fizbuz import users
from serving.mms import guard

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="ACLs on root's folders and other users need root")
NOBODY = ("nobody", pwd.getpwnam("nobody").pw_uid, pwd.getpwnam("nobody").pw_gid)


@pytest.fixture
def open_tmp():
    """A folder other users may enter (pytest's own are under a 0700 one)."""
    folder = Path(tempfile.mkdtemp(prefix="fbz-users-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder)


def as_nobody(*command):
    return subprocess.run(users.as_user(list(command), NOBODY), capture_output=True, timeout=30).returncode


@needs_root
def test_grant_traverse_lets_that_user_enter_but_not_list_and_nobody_else(open_tmp):
    closed = open_tmp / "closed"
    inner = closed / "inner"
    inner.mkdir(parents=True)
    closed.chmod(0o700)
    (inner / "file").write_text("x")
    assert users.blocked_folder(NOBODY, inner / "file") == closed
    assert users.open_way_to(NOBODY, inner / "file") == [closed]
    assert users.blocked_folder(NOBODY, inner / "file") is None
    assert users.open_way_to(NOBODY, inner / "file") == []  # nothing more to grant
    assert as_nobody("cat", str(inner / "file")) == 0
    assert as_nobody("ls", str(closed)) != 0  # traverse, not read
    # The mode's group bits now show the mask: x only, so the owning group gained nothing.
    assert closed.stat().st_mode & 0o777 == 0o710
    daemon = pwd.getpwnam("daemon")
    other = ("daemon", daemon.pw_uid, daemon.pw_gid)
    assert users.blocked_folder(other, inner / "file") == closed


@needs_root
def test_an_existing_acl_keeps_its_entries_and_its_mask_gains_only_x(open_tmp):
    folder = open_tmp / "f"
    folder.mkdir(mode=0o750)
    users.grant_traverse(folder, NOBODY)
    before = users._acl_entries(folder)
    users.grant_traverse(folder, ("daemon", pwd.getpwnam("daemon").pw_uid, 0))
    after = users._acl_entries(folder)
    assert {key: value for key, value in after.items() if key[1] != pwd.getpwnam("daemon").pw_uid} == before
    assert after[(users.MASK, users.ACL_NO_ID)] == before[(users.MASK, users.ACL_NO_ID)] == 0o5


def test_the_guard_rule_refuses_every_uid_but_the_listed_ones():
    words = guard.rule(8081, 999, 0)
    negated = [words[i + 2] for i, word in enumerate(words) if word == "!" and words[i + 1] == "--uid-owner"]
    assert (
        negated == ["999", "0"] and words.count("owner") == 2 and words[-3:] == ["REJECT", "--reject-with", "tcp-reset"]
    )
    assert guard.rule(8081, 0).count("--uid-owner") == 1

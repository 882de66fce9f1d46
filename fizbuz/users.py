"""Running a server as an unprivileged user when root starts it: who that user
is, the command that drops to it, whether it can reach a folder, and a
dedicated system user made once (idempotently) when missing.

A server that runs model code (redis-server with TorchScript, MMS with a
handler from an archive) must not run as root: whoever gets code into it
would own the machine.
"""

from __future__ import annotations

import errno
import functools
import grp
import logging
import operator
import os
import pwd
import shutil
import struct
import subprocess
from pathlib import Path

from fizbuz.lifecycle import LifecycleError, wait_until

log = logging.getLogger(__name__)

# useradd's exit codes: 9 = the name is taken (another start made it meanwhile),
# 10 = /etc/passwd is locked (another useradd runs): both are retried.
USERADD_TAKEN, USERADD_LOCKED = 9, 10


def lookup(name: str) -> tuple[str, int, int] | None:
    """(name, uid, gid) of the user `name`, or None when there is none."""
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        return None
    return entry.pw_name, entry.pw_uid, entry.pw_gid


def not_root(user: tuple[str, int, int], why: str) -> tuple[str, int, int]:
    if user[1] == 0:
        raise LifecycleError(f"user {user[0]} is root: {why}, never as root")
    return user


def as_user(command: list, user: tuple[str, int, int] | None) -> list:
    """`command` run as `user` ((name, uid, gid); None: as we are). setpriv
    execs (no parent process left between us and the server), so a pid file
    holds the server's own pid; no new privileges (setuid files) past it."""
    if user is None:
        return command
    _, uid, gid = user
    return ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--init-groups", "--no-new-privs", "--", *command]


def blocked_folder(user: tuple[str, int, int], *paths) -> Path | None:
    """The first folder on the way to any of `paths` that `user` cannot enter
    (or a file of `paths` it cannot read), or None. Asked of the kernel as that
    user (test -x / -r: mode bits, groups and ACLs all count), in one short process."""
    folders = list(dict.fromkeys(folder for path in paths for folder in reversed([Path(path), *Path(path).parents])))
    script = 'for f; do if [ -d "$f" ]; then [ -x "$f" ]; else [ -r "$f" ]; fi || { printf "%s" "$f"; exit 0; }; done'
    found = subprocess.run(
        as_user(["/bin/sh", "-c", script, "sh", *map(str, folders)], user),
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
        check=True,
    )
    return Path(found.stdout) if found.stdout else None


# POSIX ACLs as the kernel stores them in the system.posix_acl_access attribute
# (linux/posix_acl_xattr.h): a version, then (tag, permissions, id) entries sorted by tag and id.
ACL_XATTR, ACL_VERSION, ACL_NO_ID = "system.posix_acl_access", 2, 0xFFFFFFFF
USER_OBJ, USER, GROUP_OBJ, GROUP, MASK, OTHER = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20
ACL_ENTRY = struct.Struct("<HHI")


def _acl_entries(folder: Path) -> dict[tuple[int, int], int]:
    """{(tag, id): permissions}: the folder's ACL, or the one its mode bits mean."""
    try:
        data = os.getxattr(folder, ACL_XATTR, follow_symlinks=False)
    except OSError as error:
        if error.errno != errno.ENODATA:
            raise
        mode = folder.lstat().st_mode
        return {
            (USER_OBJ, ACL_NO_ID): (mode >> 6) & 7,
            (GROUP_OBJ, ACL_NO_ID): (mode >> 3) & 7,
            (OTHER, ACL_NO_ID): mode & 7,
        }
    (version,) = struct.unpack_from("<I", data)
    if version != ACL_VERSION:
        raise LifecycleError(f"{folder}: ACL version {version} is not one this code reads")
    return {(tag, ident): perm for tag, perm, ident in ACL_ENTRY.iter_unpack(data[4:])}


def grant_traverse(folder, user: tuple[str, int, int]) -> None:
    """Let `user` (and only it) enter `folder` without listing it: an ACL entry
    user:NAME:--x (as `setfacl -m u:NAME:x`, which Debian leaves uninstalled);
    no other user or group gains a bit."""
    folder = Path(folder)
    entries = _acl_entries(folder)
    entries[(USER, user[1])] = entries.get((USER, user[1]), 0) | 1
    if (MASK, ACL_NO_ID) in entries:  # an ACL already: its mask gains only the x bit
        entries[(MASK, ACL_NO_ID)] |= 1
    else:  # the first named entry: the mask is the group class's union
        entries[(MASK, ACL_NO_ID)] = functools.reduce(
            operator.or_, (perm for (tag, _), perm in entries.items() if tag in (USER, GROUP_OBJ, GROUP)), 0
        )
    data = struct.pack("<I", ACL_VERSION) + b"".join(
        ACL_ENTRY.pack(tag, perm, ident) for (tag, ident), perm in sorted(entries.items())
    )
    os.setxattr(folder, ACL_XATTR, data, follow_symlinks=False)


def open_way_to(user: tuple[str, int, int], *paths, limit: int = 16) -> list[Path]:
    """Make every folder on the way to `paths` enterable by `user`, granting
    traverse (grant_traverse) only where it is blocked; returns those folders.
    For the project's interpreter, which may live where only root goes (a
    pyenv under /root)."""
    granted = []
    while (blocked := blocked_folder(user, *paths)) is not None:
        if blocked in granted or len(granted) >= limit:
            raise LifecycleError(f"{user[0]} still cannot enter {blocked} after an ACL entry let it")
        grant_traverse(blocked, user)
        log.warning(
            "let %s enter %s (an ACL entry u:%s:x: no listing, no reading) to reach %s; "
            "'setfacl -x u:%s %s' takes it back",
            user[0],
            blocked,
            user[0],
            ", ".join(map(str, paths)),
            user[0],
            blocked,
        )
        granted.append(blocked)
    return granted


def ensure_system_user(name: str, timeout: float = 60.0) -> tuple[str, int, int]:
    """The system user `name` (no home, no login shell, its own group), made
    with useradd when missing; safe when several starts race to make it."""
    found = lookup(name)
    if found is not None:
        return found
    if os.geteuid() != 0 or shutil.which("useradd") is None:
        raise LifecycleError(f"no user {name}, and only root with useradd can make it")

    def made():
        result = subprocess.run(
            [
                "useradd",
                "--system",
                "--user-group",
                "--no-create-home",
                "--home-dir",
                "/nonexistent",
                "--shell",
                "/usr/sbin/nologin",
                "--comment",
                "fizbuz-serve model servers, unprivileged",
                name,
            ],
            capture_output=True,
            text=True,
            timeout=30,
            stdin=subprocess.DEVNULL,
        )
        if result.returncode not in (0, USERADD_TAKEN, USERADD_LOCKED):
            raise LifecycleError(f"useradd {name} failed: {result.stderr.strip()}")
        return lookup(name)

    user = wait_until(made, timeout, f"the system user {name} to exist", interval=0.5)
    log.info("made the system user %s (uid %d, group %s)", name, user[1], grp.getgrgid(user[2]).gr_name)
    return user

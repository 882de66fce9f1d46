"""Who may do what on the Redis server (issue 22): a TorchScript model is code
that redis-server runs, so storing one is an admin's act.

Users (Redis 7 ACLs; the default user is off, so a connection without a
password can do nothing but AUTH/HELLO):
  admin     everything: store/delete models, CONFIG, RESTORE, MODULE, ACL ...
  runner    set/get tensors, run models, read AI.INFO; nothing else
  replica   what a replica needs from its master (masteruser/masterauth)
  sentinel  what a redis-sentinel needs from the servers it watches
            (sentinel auth-user/auth-pass)

Passwords are random, one file per user (`<user>.pass`) in a secrets folder
that is 0700, each file created 0600 (os.open with that mode: never written
first and chmod'ed after). The server gets only their SHA-256 in an ACL file.
"""

import hashlib
import secrets
from pathlib import Path

from fizbuz.private_files import PRIVATE_DIR, PRIVATE_FILE, private_dir, write_private  # noqa: F401

ADMIN, RUNNER, REPLICA, SENTINEL = "admin", "runner", "replica", "sentinel"
USERS = (ADMIN, RUNNER, REPLICA, SENTINEL)

# What any client needs to connect, authenticate and find keys (redis-py,
# the redisai client, redis-cli, and cluster clients reading the slot map;
# redis-py's RedisCluster asks INFO whether cluster mode is on).
CONNECTING = (
    "+ping",
    "+auth",
    "+hello",
    "+echo",
    "+quit",
    "+reset",
    "+select",
    "+client|setname",
    "+client|getname",
    "+client|id",
    "+command",
    "+info",
    "+cluster|slots",
    "+cluster|shards",
    "+cluster|nodes",
    "+cluster|info",
    "+cluster|keyslot",
    "+readonly",
    "+readwrite",
)

RULES = {
    ADMIN: ("~*", "&*", "+@all"),
    # No AI.MODELSTORE/MODELSET/MODELDEL, no RESTORE (a DUMP of a model is a
    # model), no DEL/FLUSH*, no CONFIG/MODULE/DEBUG: only what the book's client
    # and the redisai client need to answer numbers.
    RUNNER: (
        "~*",
        "resetchannels",
        *CONNECTING,
        "+ai.tensorset",
        "+ai.tensorget",
        "+ai.modelrun",
        "+ai.modelexecute",
        "+ai.info",
    ),
    # Redis's documented minimum for a replica's link to its master.
    REPLICA: ("resetkeys", "resetchannels", "+ping", "+auth", "+hello", "+psync", "+sync", "+replconf"),
    # Redis's documented minimum for a sentinel watching a server.
    SENTINEL: (
        "resetkeys",
        "&*",
        "+ping",
        "+auth",
        "+hello",
        "+info",
        "+role",
        "+multi",
        "+exec",
        "+slaveof",
        "+replicaof",
        "+config|rewrite",
        "+client|setname",
        "+client|kill",
        "+script|kill",
        "+subscribe",
        "+publish",
    ),
}


class Secrets:
    """The users' passwords, one file each in `folder`."""

    def __init__(self, folder):
        self.folder = Path(folder)

    def path(self, user):
        return self.folder / f"{user}.pass"

    def ensure(self):
        """Create the folder and any missing password (existing ones are kept,
        so a restart keeps the same credentials)."""
        private_dir(self.folder)
        for user in USERS:
            if not self.path(user).exists():
                write_private(self.path(user), secrets.token_urlsafe(32) + "\n")
        return self

    def password(self, user):
        return self.path(user).read_text().strip()

    def credentials(self, user):
        """Keyword arguments for redis.Redis and its kin."""
        return {"username": user, "password": self.password(user)}

    def acl_text(self):
        """The server's ACL file: the default user off, each user with its rules
        and its password's SHA-256 (the passwords themselves stay here)."""
        lines = ["user default off resetkeys resetchannels -@all"]
        for user in USERS:
            digest = hashlib.sha256(self.password(user).encode()).hexdigest()
            lines.append(" ".join(("user", user, "on", f"#{digest}", *RULES[user])))
        return "\n".join(lines) + "\n"

    def write_acl(self, path, owner=None):
        """Write the ACL file that redis-server reads (--aclfile); `owner`: the
        server's user when it is not the caller."""
        return write_private(path, self.acl_text(), owner)

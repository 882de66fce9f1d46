"""The bearer-token file: one `NAME TOKEN` pair a line, `#` comments allowed.

nginx cannot read it directly, so every reload renders it into a `map` include
(see config.py). Names and tokens are restricted to characters that cannot
break out of an nginx string.
"""

import re
import secrets
from pathlib import Path
from fizbuz.errors import FizbuzError

from fizbuz.private_files import write_private

NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
TOKEN = re.compile(r"^[A-Za-z0-9_.~+/=-]{16,256}$")


class TokenError(FizbuzError):
    pass


def read(path):
    """{name: token}; raises TokenError naming the bad line."""
    tokens = {}
    for number, line in enumerate(Path(path).read_text().splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) != 2 or not NAME.match(parts[0]) or not TOKEN.match(parts[1]):
            raise TokenError(
                f"{path}:{number}: expected 'NAME TOKEN' (name: letters, digits, _.-; "
                f"token: 16..256 of letters, digits, _.~+/=-)"
            )
        if parts[0] in tokens:
            raise TokenError(f"{path}:{number}: name {parts[0]!r} appears twice")
        tokens[parts[0]] = parts[1]
    return tokens


def write(path, tokens):
    path = Path(path)
    text = "# NAME TOKEN  (fleet.sh token add/revoke edit this; a reload applies it)\n"
    text += "".join(f"{name} {token}\n" for name, token in tokens.items())
    # 0600 from its creation, then renamed over the old one: never readable by
    # others, and a reload never reads half a file.
    path.parent.mkdir(parents=True, exist_ok=True)
    write_private(path, text)


def new_token():
    return secrets.token_urlsafe(24)


def add(path, name, token=None):
    tokens = read(path) if Path(path).exists() else {}
    if not NAME.match(name):
        raise TokenError(f"bad token name {name!r}: letters, digits, _.- only")
    if name in tokens:
        raise TokenError(f"a token named {name!r} exists already; revoke it first")
    token = token or new_token()
    if not TOKEN.match(token):
        raise TokenError("a token is 16..256 of letters, digits, _.~+/=-")
    tokens[name] = token
    write(path, tokens)
    return token


def revoke(path, name):
    tokens = read(path)
    if tokens.pop(name, None) is None:
        raise TokenError(f"no token named {name!r} in {path}")
    write(path, tokens)


def render_map(tokens):
    """The body of nginx's `map $http_authorization $fizbuz_client` block.

    Each key is a regex (`~`): nginx compares a map's plain keys ignoring case,
    so tokens differing only in case would be one token (and nginx refuses two
    such keys). The scheme is case-insensitive (RFC 7235), the token is not;
    every regex character a token may hold is escaped (re.escape: `.`, `+`,
    `~`, `-`), and nginx keeps a backslash that escapes none of its own quotes."""
    return "".join(f'"~^(?i:Bearer) {re.escape(token)}$" "{name}";\n' for name, token in tokens.items())

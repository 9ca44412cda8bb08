"""Secrets kept out of every line the project writes: the registry of known secrets, and
the masking of URL passwords.

One module for both, so that a log line, a run record, a config error and a store's
name of its server all hide a secret the same way.  Only the standard library: every
cron script imports it before parsing its arguments.
"""
from __future__ import annotations

import re

_secrets: set[str] = set()


def register_secret(*values: str | None) -> None:
    """Never let these strings reach a log line (keys, secrets, passwords, tokens)."""
    _secrets.update(v for v in values if v and len(v) >= 4)


def forget_secrets() -> None:
    """Empty the registry: a test's secrets must not redact the next test's lines."""
    _secrets.clear()


def redact(text: str) -> str:
    """`text` with every registered secret replaced by ***."""
    for secret in _secrets:
        text = text.replace(secret, "***")
    return text


# from // (a URL missing the colon of its scheme too) to the line's last @: a password may
# hold an @, or a space typed unencoded
_PASSWORD = re.compile(r"(//[^:/?#@\s]*:)[^\n]*@")


def masked(text: str) -> str:
    """`text` with the password of every URL's user:password@ replaced by ***, even in a malformed URL."""
    return _PASSWORD.sub(r"\1***@", text)

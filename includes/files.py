"""Files written safely and secrets read carefully: atomic and private writes, key and token files.

Apart from config.py (which only names these files) so that the scripts, the stores
and the tests share one way to write a file a crash cannot leave half written, and one
way to read a secret that refuses a device, a FIFO or a key others can read.
"""
from __future__ import annotations

import base64
import binascii
import os
import stat
from pathlib import Path

from includes.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
SECRET_FILE_MAX = 64 * 1024   # a key file is a few hundred bytes; /dev/zero or a log file is no key


def shown(path: Path) -> str:
    """A path as the user would type it: relative to the project when inside it."""
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def write_atomic(path: Path, data: str | bytes) -> None:
    """Readers see the old file or the new one, never half of one (a crash, a power cut)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:              # a full disk: no half file left behind, and the file named
        tmp.unlink(missing_ok=True)
        raise OSError(exc.errno, exc.strerror, str(path)) from None


def write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read (key files made by the demo and tests)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)


def _read_secret(path: Path, what: str) -> tuple[int, str]:
    """(mode, text) of a small regular file: a device, a FIFO or a huge file is refused, not read."""
    name = shown(path)
    try:
        with open(path, "rb", opener=lambda p, flags: os.open(p, flags | os.O_NONBLOCK)) as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise ConfigError(f"{name}: {what} is not a regular file; point the config at the file itself")
            if st.st_size > SECRET_FILE_MAX:
                raise ConfigError(f"{name}: {what} holds {st.st_size} bytes, more than a key ever needs "
                                  f"({SECRET_FILE_MAX}); is it the right file?")
            return st.st_mode, f.read(SECRET_FILE_MAX + 1).decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{name}: {what} cannot be read: {getattr(exc, 'strerror', None) or exc}") from None


def read_key_file(path: Path, *, live: bool, check_base64: bool = True) -> tuple[str, str]:
    """(key, secret) from a two-line key file (krakenex's format).

    Live trading refuses a key file that group or others can read: the secret
    can move money.
    """
    name = shown(path)
    mode, text = _read_secret(path, "the API key file")
    if live and mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"{name}: the API key file is readable by group or others "
                          f"(mode {stat.S_IMODE(mode):o}); run: chmod 600 {name}")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) < 2:
        raise ConfigError(f"{name}: the API key file needs two lines, the key then the secret")
    key, secret = lines[0], lines[1]
    if check_base64:
        try:
            base64.b64decode(secret, validate=True)
        except (binascii.Error, ValueError):
            raise ConfigError(f"{name}: line 2 (the secret) is not valid base64") from None
    return key, secret


def read_token_file(path: Path) -> str:
    """A one-line secret (CoinMarketCap key, InfluxDB token)."""
    token = _read_secret(path, "the token file")[1].strip()
    if not token:
        raise ConfigError(f"{shown(path)}: is empty; it should hold the token on one line")
    return token

"""The project's exceptions.

Every failure a user can cause or meet ends as one of these, whose message is a
single line naming the cause (the config key and file, the market, the HTTP
status).  Scripts print it and exit non-zero; nothing else is swallowed.
"""
from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager


class CrontraderError(Exception):
    """Base of every error this project raises on purpose; `exit_status` is the script's."""

    exit_status = 1


class ConfigError(CrontraderError):
    """The configuration file is missing, unreadable or invalid (exit status 2)."""

    exit_status = 2


class SettingError(ConfigError):
    """A setting the file's schema allows but this run cannot use (live trading without a key
    file, no backup destination): found after loading, so the script puts the config file's
    name before it, as the loader does for its own problems (exit status 2)."""

    def __init__(self, setting: str, problem: str) -> None:
        super().__init__(f"{setting}: {problem}")
        self.setting = setting


class StorageError(CrontraderError):
    """A database, state store or time-series server failed."""


class StorageRefused(StorageError):
    """The store answered and refused us (access denied, unknown database), or cannot exist
    where it is configured (a SQLite file that cannot be opened or created).  Waiting will not
    help, the owner must fix the URL: exit status 2, and nothing is spooled."""

    exit_status = 2


class BadPath(ConfigError):
    """A file or directory the config names cannot be used: permissions, a read-only
    filesystem, a file where a directory should be (exit status 2)."""


class DiskFull(CrontraderError):
    """A local disk is full, or a quota reached (exit status 1)."""


def local_fault(exc: OSError, hint: str = "") -> CrontraderError:
    """An OSError on a local file as one line naming the file and what to do."""
    import errno

    where = f"{exc.filename}: " if exc.filename else ""
    reason = exc.strerror or type(exc).__name__
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return DiskFull(f"{where}{reason}: the disk is full; free some space on it")
    fix = hint or "check the paths in the config"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return BadPath(f"{where}{reason}: make it writable by this user, or {fix}")
    if exc.errno in (errno.EISDIR, errno.ENOTDIR, errno.EEXIST, errno.ENOENT, errno.ENAMETOOLONG, errno.ELOOP):
        return BadPath(f"{where}{reason}: {fix}")
    return CrontraderError(f"{where}{reason}")


class ExchangeError(CrontraderError):
    """An exchange call failed.

    `exchange` names the venue, `method` the API call, `status` the HTTP status
    when there was one and `code` the exchange's own error string or code.

    `refused` is True only when the exchange itself answered that it refused the
    request (an error reply it is known to send before doing anything: bad
    arguments, insufficient funds, a rate limit, a stale nonce...).  It is set
    where each venue's replies are mapped, and nowhere else.  For an order it is
    the one proof that nothing was placed; every other failure (a timeout, a 5xx
    page, a malformed reply, "busy", "deadline elapsed") leaves its fate unknown.
    """

    def __init__(self, message: str, *, exchange: str = "", method: str = "",
                 status: int | None = None, code: str | None = None, refused: bool = False) -> None:
        self.exchange = exchange
        self.method = method
        self.status = status
        self.code = code
        self.refused = refused
        where = "/".join(p for p in (exchange, method) if p)
        parts = [f"{where}: {message}" if where else message]
        if status is not None:
            parts.append(f"HTTP {status}")
        if code and code not in message:
            parts.append(code)
        super().__init__(" | ".join(parts))


class TemporaryError(ExchangeError):
    """Worth retrying later: network trouble, 5xx, service unavailable or busy."""


@contextmanager
def reading(what: str, exchange: str, method: str) -> Iterator[None]:
    """Read a venue's reply inside: a reply of the wrong shape (a field missing, a number that
    is none, a list for an object) becomes a TemporaryError naming `what` and the Python error.
    The venue answered what we cannot read; the next run asks again.  Nothing else is caught."""
    try:
        yield
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
        raise TemporaryError(f"malformed {what} ({type(exc).__name__}: {exc})", exchange=exchange,
                             method=method) from None


class RateLimited(TemporaryError):
    """The exchange's rate limit was hit."""


class InvalidNonce(TemporaryError):
    """Kraken refused the nonce.  Our own calls share one nonce sequence per key (KeyGate),
    so a refusal that repeats means another program signs with the same key."""

    ADVICE = "another program uses this API key with larger nonces: give crontrader a key of its own"


class OrderStateUnknown(TemporaryError):
    """An order may have been placed, and no answer about its reference settled it yet:
    its journal row stays open and its thread busy until a lookup by reference does."""


class PermanentError(ExchangeError):
    """Retrying the same call will not help: bad arguments, permissions, unknown names."""


class AuthenticationError(PermanentError):
    """The API key or secret was refused."""


class LockedOut(AuthenticationError):
    """The exchange locked the key out for a while (Kraken: EGeneral:Temporary lockout,
    about 15 minutes after repeated auth, nonce or rate-limit failures): the run stops."""


class UnknownMarket(PermanentError):
    """The market or asset does not exist on this exchange."""


class MarketUnavailable(PermanentError):
    """The market exists but does not accept new orders now (status not online)."""


class InsufficientFunds(PermanentError):
    """Not enough balance for the order."""


class OrderTooSmall(PermanentError):
    """The order is below the pair's minimum volume or cost."""


# urllib3's wrapping of a failed request: keep the host and what happened to it.
_POOL = re.compile(r"\w*ConnectionPool\(host='([^']*)', port=(\d+)\): Max retries exceeded with url: \S+ "
                   r"\(Caused by \w+\((.*)\)\)$")
_NOISE = re.compile(r"<[\w.]+ object at 0x[0-9a-f]+>: |\w*Connection\(host='[^']*', port=\d+\): ")


def cause(exc: BaseException | str) -> str:
    """The cause of a failure on one line: shortened by dropping the wrappers' noise (object
    addresses, retry counts, the request's URL), never cut, so that the root cause stays
    (a DNS failure, connection refused, a TLS error, an HTTP status)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    pool = _POOL.search(text)
    if pool:
        host, port, inner = pool.groups()
        text = f"{text[:pool.start()]}{host}:{port}: {inner.strip(chr(34) + chr(39))}"
    return _NOISE.sub("", text)

"""The project's exceptions.

Every failure a user can cause or meet ends as one of these, whose message is a
single line naming the cause (the config key and file, the market, the HTTP
status).  Scripts print it and exit non-zero; nothing else is swallowed.
"""
from __future__ import annotations


class CrontraderError(Exception):
    """Base of every error this project raises on purpose."""


class ConfigError(CrontraderError):
    """The configuration file is missing, unreadable or invalid (exit status 2)."""


class StorageError(CrontraderError):
    """A database, state store or time-series server failed."""


class ExchangeError(CrontraderError):
    """An exchange call failed.

    `exchange` names the venue, `method` the API call, `status` the HTTP status
    when there was one and `code` the exchange's own error string or code.
    """

    def __init__(self, message: str, *, exchange: str = "", method: str = "",
                 status: int | None = None, code: str | None = None) -> None:
        self.exchange = exchange
        self.method = method
        self.status = status
        self.code = code
        where = "/".join(p for p in (exchange, method) if p)
        parts = [f"{where}: {message}" if where else message]
        if status is not None:
            parts.append(f"HTTP {status}")
        if code and code not in message:
            parts.append(code)
        super().__init__(" | ".join(parts))


class TemporaryError(ExchangeError):
    """Worth retrying later: network trouble, 5xx, service unavailable or busy."""


class RateLimited(TemporaryError):
    """The exchange's rate limit was hit."""


class InvalidNonce(TemporaryError):
    """Kraken refused the nonce (two processes shared a key without a shared nonce)."""


class OrderStateUnknown(TemporaryError):
    """An order was sent but its fate is unknown (reply lost and not found by its ref)."""


class PermanentError(ExchangeError):
    """Retrying the same call will not help: bad arguments, permissions, unknown names."""


class AuthenticationError(PermanentError):
    """The API key or secret was refused."""


class UnknownMarket(PermanentError):
    """The market or asset does not exist on this exchange."""


class MarketUnavailable(PermanentError):
    """The market exists but does not accept new orders now (status not online)."""


class InsufficientFunds(PermanentError):
    """Not enough balance for the order."""


class OrderTooSmall(PermanentError):
    """The order is below the pair's minimum volume or cost."""

"""The platform named in the config, built with its keys; imported lazily so that a
script loads only the exchange client it uses."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from includes.redaction import register_secret

if TYPE_CHECKING:
    from includes.config import Config
    from includes.platforms.base import Platform


def make_platform(cfg: Config, *, live: bool) -> Platform:
    """The exchange of `cfg`.  `live` demands a key file only its owner can read."""
    from includes.files import read_key_file

    ex = cfg.exchange
    key = secret = ""
    if ex.key_file is not None:  # Kraken's secrets are base64, Bittrex's are not
        key, secret = read_key_file(cfg.path(ex.key_file), live=live,
                                    check_base64="kraken" in (ex.name, ex.ccxt_id))
        register_secret(key, secret)
    elif live:
        from includes.errors import SettingError
        raise SettingError("exchange.key_file", "live trading needs an API key file")
    common: dict[str, Any] = dict(quote=cfg.trading.quote, fee_percent=cfg.trading.fee_percent, key=key, secret=secret,
                  timeout=ex.timeout, retries=ex.retries)
    # One nonce sequence and call budget per key, in Redis when the hosts share their state there.
    from includes.platforms.keygate import ledger_for
    venue = (ex.ccxt_id if ex.name == "ccxt" else None) or ex.name
    ledger = ledger_for(cfg.resolve_url(cfg.storage.state), venue, key, cfg.path(cfg.paths.tmp), ex.timeout,
                        cfg.storage.timeout)
    if ex.name == "bittrex":
        from includes.platforms.bittrex import API_URL, BittrexPlatform
        return BittrexPlatform(api_url=ex.api_url or API_URL, calls_per_second=ex.public_calls_per_second,
                               **common)
    if ex.name == "ccxt":
        from includes.platforms.ccxt import CcxtPlatform
        assert ex.ccxt_id is not None, "config.py requires exchange.ccxt_id with exchange.name ccxt"
        return CcxtPlatform(exchange_id=ex.ccxt_id, api_url=ex.api_url, state_dir=cfg.path(cfg.paths.tmp),
                            rate_tier=ex.rate_tier, calls_per_second=ex.public_calls_per_second, ledger=ledger,
                            **common)
    from includes.platforms.kraken import KrakenPlatform
    return KrakenPlatform(api_url=ex.api_url or "https://api.kraken.com", state_dir=cfg.path(cfg.paths.tmp),
                          rate_tier=ex.rate_tier, public_calls_per_second=ex.public_calls_per_second, ledger=ledger,
                          **common)

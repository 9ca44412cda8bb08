"""The platform named in the config, built with its keys; imported lazily so that a
script loads only the exchange client it uses."""
from __future__ import annotations

from typing import TYPE_CHECKING

from includes.runtime import register_secret

if TYPE_CHECKING:
    from includes.config import Config
    from includes.platforms.base import Platform


def make_platform(cfg: Config, *, live: bool) -> Platform:
    """The exchange of `cfg`.  `live` demands a key file only its owner can read."""
    from includes.config import read_key_file

    ex = cfg.exchange
    key = secret = ""
    if ex.key_file is not None:
        key, secret = read_key_file(cfg.path(ex.key_file), live=live)
        register_secret(key, secret)
    elif live:
        from includes.errors import ConfigError
        raise ConfigError("exchange.key_file: live trading needs an API key file")
    from includes.platforms.kraken import KrakenPlatform
    return KrakenPlatform(quote=cfg.trading.quote, fee_percent=cfg.trading.fee_percent,
                          api_url=ex.api_url, key=key, secret=secret,
                          state_dir=cfg.path(cfg.paths.tmp), rate_tier=ex.rate_tier,
                          public_calls_per_second=ex.public_calls_per_second,
                          timeout=ex.timeout, retries=ex.retries)

"""The state store on Redis: each thread a hash, its moves Lua scripts (atomic on the server).

redis is imported when a store is opened, never by the SQLite store's users.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from includes.storage.state import StateStore, Thread, Value, _text, _translated

if TYPE_CHECKING:
    from redis.typing import EncodableT, FieldT


def _str(value: bytes | str) -> str:
    """A reply's text: the client decodes replies (decode_responses=True), redis-py's types
    cannot know it."""
    return value.decode() if isinstance(value, bytes) else value


class RedisStateStore(StateStore):

    # KEYS[1] thread, KEYS[2] the set of thread numbers; ARGV: expected state ('' = missing),
    # expected ref ('' = any), thread number, field, value...
    MOVE = """
        if (redis.call('HGET', KEYS[1], 'state') or '') ~= ARGV[1] then return 0 end
        if ARGV[2] ~= '' and redis.call('HGET', KEYS[1], 'order_ref') ~= ARGV[2] then return 0 end
        redis.call('HSET', KEYS[1], unpack(ARGV, 4))
        redis.call('SADD', KEYS[2], ARGV[3])
        return 1"""
    UNLOCK = """
        if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
        return redis.call('DEL', KEYS[1])"""
    EXTEND = """
        if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
        return redis.call('PEXPIRE', KEYS[1], ARGV[2])"""
    BOUND = """
        local left = redis.call('PTTL', KEYS[1])
        if left == -1 or left > tonumber(ARGV[1]) then
            redis.call('PEXPIRE', KEYS[1], ARGV[1])
            return left
        end
        return false"""

    def __init__(self, url: str, prefix: str = "crontrader", mode: str = "live", timeout: float = 20.0) -> None:
        import redis  # here, not at the top: the SQLite store must not pay for it

        super().__init__(prefix, mode)
        self.backend_errors = redis.RedisError
        self.refused_errors = redis.AuthenticationError
        # Timeouts (storage.timeout): a cron run must fail, not hang, when the server is gone or hung.
        self.client = redis.Redis.from_url(url, decode_responses=True,
                                           socket_connect_timeout=timeout, socket_timeout=timeout)
        kw = self.client.connection_pool.connection_kwargs
        server = kw.get("path") or f"{kw.get('host')}:{kw.get('port')}"
        self.where = f"Redis at {server}/{kw.get('db', 0)}"
        self._scripts = {name: self.client.register_script(getattr(self, name))
                         for name in ("MOVE", "UNLOCK", "EXTEND", "BOUND")}
        self._registered = False   # _register_old_threads has run

    @_translated
    def _move(self, n: int, expected: str, expected_ref: str | None, fields: dict[str, str]) -> bool:
        args: list[EncodableT] = [expected, expected_ref or "", n, *(x for item in fields.items() for x in item)]
        return bool(self._scripts["MOVE"](keys=[self._thread_key(n), self._numbers], args=args))

    @property
    def _numbers(self) -> str:
        """The set of the key prefix's thread numbers: the agent finds its threads by their own
        keys, never by scanning a Redis database that may hold a million keys of others."""
        return self.key_prefix + "threads"

    def _register_old_threads(self) -> None:
        """Threads written before the set existed are found by a scan, once, and registered."""
        if self._registered:
            return
        if not self.client.exists(self._numbers):
            numbers = [key.rsplit(":", 1)[1] for key in
                       self.client.scan_iter(match=self.key_prefix + "thread:*", count=1000)]
            if numbers:
                self.client.sadd(self._numbers, *numbers)
        self._registered = True

    @_translated
    def ensure_threads(self, total: int) -> int:
        self._register_old_threads()
        return super().ensure_threads(total)

    @_translated
    def get_thread(self, n: int) -> Thread | None:
        fields = self.client.hgetall(self._thread_key(n))
        return Thread.from_fields(n, {_str(k): _str(v) for k, v in fields.items()}) if fields else None

    @_translated
    def threads(self) -> list[Thread]:
        self._register_old_threads()
        keys = [self._thread_key(int(n)) for n in self.client.smembers(self._numbers)]
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            pipe.hgetall(key)
        found = [Thread.from_fields(int(key.rsplit(":", 1)[1]), fields)
                 for key, fields in zip(keys, pipe.execute(), strict=True) if fields]
        return sorted(found, key=lambda t: t.n)

    @_translated
    def put_thread(self, thread: Thread) -> None:
        pipe = self.client.pipeline(transaction=True)
        fields: dict[FieldT, EncodableT] = {k: v for k, v in thread.fields().items()}
        pipe.hset(self._thread_key(thread.n), mapping=fields)
        pipe.sadd(self._numbers, thread.n)
        pipe.execute()

    @_translated
    def set_many(self, values: Mapping[str, Value]) -> None:
        if values:
            self.client.mset({self.key_prefix + k: _text(v) for k, v in values.items()})

    @_translated
    def get_value(self, key: str) -> str | None:
        value = self.client.get(self.key_prefix + key)
        return None if value is None else _str(value)

    @_translated
    def keys(self, pattern: str = "*") -> list[str]:
        """As the interface says; the set of thread numbers is the store's own index, not a value."""
        start = len(self.key_prefix)
        return sorted(k[start:] for k in self.client.scan_iter(match=self.key_prefix + pattern, count=1000)
                      if k != self._numbers)

    def close(self) -> None:
        self.client.close()

    @_translated
    def _lock_acquire(self, key: str, token: str, ttl_ms: int) -> bool:
        return bool(self.client.set(key, token, nx=True, px=ttl_ms))

    @_translated
    def _lock_holder(self, key: str) -> str | None:
        holder = self.client.get(key)
        return None if holder is None else _str(holder)

    @_translated
    def _lock_release(self, key: str, token: str) -> bool:
        return bool(self._scripts["UNLOCK"](keys=[key], args=[token]))

    @_translated
    def _lock_extend(self, key: str, token: str, ttl_ms: int) -> bool:
        return bool(self._scripts["EXTEND"](keys=[key], args=[token, ttl_ms]))

    @_translated
    def _lock_bound(self, key: str, ttl_ms: int) -> int | None:
        left = self._scripts["BOUND"](keys=[key], args=[ttl_ms])
        return None if left is None else int(left)

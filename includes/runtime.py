"""What every cron script shares: the command line, logging, the run lock, and
the stop and dry-run files.

Only the standard library is imported here: `script.py --help` must start fast
on a Raspberry Pi, so the heavy modules load after the arguments are parsed.
"""
from __future__ import annotations

import argparse
import fcntl
import gc
import logging
import logging.handlers
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from includes.config import Config

ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")

log = logging.getLogger("crontrader")

_secrets: set[str] = set()


def register_secret(*values: str | None) -> None:
    """Never let these strings reach a log line (keys, secrets, passwords, tokens)."""
    _secrets.update(v for v in values if v and len(v) >= 4)


def redact(text: str) -> str:
    for secret in _secrets:
        text = text.replace(secret, "***")
    return text


class _RedactingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def setup_logging(script: str, log_dir: Path, level: str = "INFO", verbose: bool = False,
                  stderr: bool | None = None) -> None:
    """log/<script>.log (rotating), plus stderr when run by hand or with --verbose.

    Under cron stderr is not a terminal and stays quiet: cron would mail it.
    """
    log_dir.mkdir(parents=True, exist_ok=True)
    formatter = _RedactingFormatter("%(asctime)s %(name)s[%(process)d] %(levelname)s %(message)s")
    file_handler = logging.handlers.RotatingFileHandler(
        log_dir / f"{script}.log", maxBytes=1_000_000, backupCount=5, encoding="utf-8")
    file_handler.setFormatter(formatter)
    handlers: list[logging.Handler] = [file_handler]
    if stderr if stderr is not None else (verbose or sys.stderr.isatty()):
        stderr_handler = logging.StreamHandler(sys.stderr)
        stderr_handler.setFormatter(_RedactingFormatter("%(levelname)s %(message)s"))
        handlers.append(stderr_handler)
    root = logging.getLogger()
    for handler in root.handlers[:]:
        root.removeHandler(handler)
        handler.close()
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else getattr(logging, level))
    for noisy in ("urllib3", "requests", "influxdb_client"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _logs_to_stderr() -> bool:
    return any(type(h) is logging.StreamHandler for h in logging.getLogger().handlers)


@contextmanager
def run_lock(job: str, tmp_dir: Path) -> Iterator[bool]:
    """flock on tmp/<job>.lock; yields False when another run of the job holds it.

    The kernel drops the lock when the process dies, so a crashed run never
    leaves a stale lock behind.
    """
    tmp_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(tmp_dir / f"{job}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield True
    finally:
        os.close(fd)


def stop_requested(cfg: Config) -> bool:
    """The stop file halts all trading while it exists."""
    return cfg.path(cfg.trading.stop_file).exists()


def request_stop(cfg: Config, why: str) -> None:
    """Create the stop file, saying why in it: every later run sleeps until the owner removes it."""
    path = cfg.path(cfg.trading.stop_file)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(why + "\n")


def dry_run_requested(cfg: Config) -> bool:
    """Dry-run from the config flag or from the dry-run file."""
    return cfg.trading.dry_run or cfg.path(cfg.trading.dry_run_file).exists()


def progress(items: Iterable[T], total: int | None = None, desc: str = "") -> Iterable[T]:
    """A progress bar on a terminal; the bare iterable under cron."""
    if not sys.stderr.isatty():
        return items
    from tqdm import tqdm
    return tqdm(items, total=total, desc=desc, unit="", leave=False)


def run_script(name: str, description: str,
               run: Callable[[Config, argparse.Namespace], int | None],
               add_arguments: Callable[[argparse.ArgumentParser], None] | None = None,
               lock: bool = True) -> None:
    """The common main of every script: arguments, config, logging, lock, errors.

    Exit status: 0 done (or another run held the lock), 1 failed, 2 bad
    configuration or arguments, 130 interrupted.
    """
    parser = argparse.ArgumentParser(prog=f"{name}.py", description=description)
    parser.add_argument("--config", type=Path, default=None, metavar="PATH",
                        help="configuration file (default: conf/config.yaml)")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="log at DEBUG level and to stderr")
    if add_arguments:
        add_arguments(parser)
    args = parser.parse_args()

    from includes.config import load_config
    from includes.errors import ConfigError, CrontraderError

    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        sys.exit(2)
    setup_logging(name, cfg.path(cfg.paths.log), cfg.log_level, args.verbose)
    try:
        if not lock:
            code = run(cfg, args) or 0
        else:
            with run_lock(name, cfg.path(cfg.paths.tmp)) as acquired:
                if not acquired:
                    log.info("another %s run is in progress (tmp/%s.lock): exiting", name, name)
                    code = 0
                else:
                    code = run(cfg, args) or 0
    except ConfigError as exc:
        _fail(name, exc)
        code = 2
    except CrontraderError as exc:
        _fail(name, exc)
        code = 1
    except KeyboardInterrupt:
        log.warning("interrupted")
        code = 130
    except Exception:
        log.exception("%s failed with an unexpected error", name)
        code = 1
    logging.shutdown()
    # What is still alive is the OS's to free: the interpreter's last collections would
    # traverse every object of the ~500 modules a run imports (35 ms of a 0.3 s agent run).
    gc.freeze()
    sys.exit(code)


def _fail(name: str, exc: BaseException) -> None:
    tell_owner(name, str(exc))


def tell_owner(name: str, text: str) -> None:
    """One line the owner must read: logged as an error, and on stderr (which cron mails)."""
    log.error("%s", text)
    if not _logs_to_stderr():
        print(f"{name}: {redact(text)}", file=sys.stderr)



def write_atomic(path: Path, data: str | bytes) -> None:
    """Readers see the old file or the new one, never half of one (a crash, a power cut)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)

"""What every cron script shares: the command line, logging, the run lock, and
the stop and dry-run files.

Only the standard library (and files.py and redaction.py, which use nothing else) is
imported here: `script.py --help` must start fast on a Raspberry Pi, so the heavy
modules load after the arguments are parsed.
"""
from __future__ import annotations

import argparse
import errno
import fcntl
import gc
import json
import logging
import logging.handlers
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from includes.files import shown, write_atomic
from includes.redaction import redact

if TYPE_CHECKING:
    from includes.config import Config
    from includes.notify import Notifier

ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")

log = logging.getLogger("crontrader")

_told: list[str] = []    # what this run said to the owner, for tmp/runs/<job>.json
_notifier: Notifier | None = None   # this run's alerts and ping, when the config has any


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
    file_handler = _LogFile(
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


class _LogFile(logging.handlers.RotatingFileHandler):
    """A log file that, once it cannot be written (a full disk), says so in one stderr line,
    not in a traceback per record."""

    told = False

    def handleError(self, record: logging.LogRecord) -> None:
        exc = sys.exc_info()[1]
        if not _LogFile.told and isinstance(exc, OSError):
            _LogFile.told = True
            from includes.errors import local_fault

            exc.filename = exc.filename or self.baseFilename
            script = Path(self.baseFilename).stem
            print(f"{script}: log lost: {local_fault(exc, 'set paths.log in the config')}", file=sys.stderr)
        elif not isinstance(exc, OSError):
            super().handleError(record)


def _logs_to_stderr() -> bool:
    return any(type(h) is logging.StreamHandler for h in logging.getLogger().handlers)


@contextmanager
def run_lock(job: str, tmp_dir: Path) -> Iterator[bool]:
    """flock on tmp/<job>.lock; yields False when another run of the job holds it.

    The kernel drops the lock when the process dies, so a crashed run never
    leaves a stale lock behind.
    """
    tmp_dir.mkdir(parents=True, exist_ok=True)
    path = tmp_dir / f"{job}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        except OSError as exc:          # a full disk: named, as os.open's errors are
            raise OSError(exc.errno, exc.strerror, str(path)) from None
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
    configuration or arguments, or a store that refused us, 130 interrupted.
    Every failure says one line on stderr (cron mails it), unexpected ones too.
    """
    parser = argparse.ArgumentParser(prog=f"{name}.py", description=description)
    parser.add_argument("--config", type=Path, default=None, metavar="PATH",
                        help="configuration file (default: conf/config.yaml)")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="log at DEBUG level and to stderr")
    if add_arguments:
        add_arguments(parser)
    args = parser.parse_args()

    from includes.config import DEFAULT_CONFIG, load_config
    from includes.errors import ConfigError, CrontraderError, SettingError, cause

    config_file = args.config or DEFAULT_CONFIG
    try:
        cfg = load_config(config_file)
    except ConfigError as exc:         # one line per problem of the file, each naming the script
        print("".join(f"{name}: {line}\n" for line in str(exc).splitlines()), end="", file=sys.stderr)
        sys.exit(2)
    from includes.errors import local_fault

    try:
        setup_logging(name, cfg.path(cfg.paths.log), cfg.log_level, args.verbose)
    except OSError as exc:
        print(f"{name}: cannot log: {local_fault(exc, 'set paths.log in the config')}", file=sys.stderr)
        sys.exit(2)
    started, ran = time.time(), True
    global _notifier
    try:
        try:
            if cfg.notify.urls or getattr(cfg.notify.ping, name, None):
                from includes.notify import Notifier
                _notifier = Notifier(cfg.notify, name)
                _notifier.ping("/start")
            if not lock:
                code = run(cfg, args) or 0
            else:
                with run_lock(name, cfg.path(cfg.paths.tmp)) as acquired:
                    ran = acquired
                    if not acquired:
                        log.info("another %s run is in progress (tmp/%s.lock): exiting", name, name)
                        code = 0
                    else:
                        code = run(cfg, args) or 0
        except OSError as exc:
            if exc.filename is None and exc.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
                raise                    # not a local file's: the unexpected error it is
            raise local_fault(exc) from exc
    except CrontraderError as exc:
        tell_owner(name, f"{shown(config_file)}: {exc}" if isinstance(exc, SettingError) else str(exc))
        code = exc.exit_status
    except KeyboardInterrupt:
        log.warning("interrupted")
        code = 130
    except Exception as exc:
        log.exception("%s failed with an unexpected error", name)
        where = _shown(cfg.path(cfg.paths.log) / f"{name}.log")
        hint = f" under {sys.executable}: run it with the venv's python" if isinstance(exc, ImportError) else ""
        _say(name, f"unexpected {type(exc).__name__}: {cause(exc)}{hint} (traceback in {where})")
        code = 1
    if ran and lock:
        record_run(cfg.path(cfg.paths.tmp), name, started, code)
    if _notifier is not None:
        if code not in (0, 130):
            notify("failed_run", f"failed (exit {code})", _told[-1] if _told else f"exit status {code}")
        _notifier.wait()   # the /start ping first
        _notifier.ping("" if code == 0 else "/fail")
        _notifier.wait()
    logging.shutdown()
    # What is still alive is the OS's to free: the interpreter's last collections would
    # traverse every object of the ~500 modules a run imports (35 ms of a 0.3 s agent run).
    gc.freeze()
    sys.exit(code)


def tell_owner(name: str, text: str) -> None:
    """One line the owner must read: logged as an error, and on stderr (which cron mails)."""
    log.error("%s", text)
    _say(name, text)


def notify(event: str, title: str, body: str) -> None:
    """An alert to the URLs of notify.urls that take `event`; nothing when none does."""
    if _notifier is not None:
        _notifier.send(event, title, body)


def _say(name: str, text: str) -> None:
    """`text` on stderr, unless the log already goes there."""
    _told.append(redact(text))
    if not _logs_to_stderr():
        print(f"{name}: {redact(text)}", file=sys.stderr)


def record_run(tmp_dir: Path, name: str, started: float, code: int) -> None:
    """tmp/runs/<job>.json: when the job last ran, how it ended (its exit status and the last line
    it told the owner) and when it last succeeded, which status.py reads.  A record that cannot be
    written is logged: it never changes how the job ended."""
    path = tmp_dir / "runs" / f"{name}.json"
    try:
        last_success = json.loads(path.read_text()).get("last_success")
    except (OSError, ValueError, AttributeError):
        last_success = None
    finished = time.time()
    record = {"job": name, "started": started, "finished": finished, "status": code,
              "message": _told[-1] if _told else "", "last_success": finished if code == 0 else last_success}
    try:
        write_atomic(path, json.dumps(record))
    except OSError as exc:
        log.warning("run record %s not written: %s", path, exc)


def _shown(path: Path) -> str:
    """`path` as the owner knows it: relative to the project when inside it."""
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


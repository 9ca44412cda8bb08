"""Run guards: the lock, logging with secrets kept out, stop and dry-run files."""
from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
from pathlib import Path

from includes import redaction
from includes.config import Config
from includes.redaction import masked, redact, register_secret
from includes.runtime import dry_run_requested, run_lock, setup_logging, stop_requested

ROOT = Path(__file__).resolve().parent.parent


def test_lock_is_exclusive_and_released(tmp_path):
    with run_lock("job", tmp_path) as first:
        assert first
        with run_lock("job", tmp_path) as second:
            assert not second
        with run_lock("other", tmp_path) as other:
            assert other
    with run_lock("job", tmp_path) as again:
        assert again


def test_lock_held_by_another_process(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(ROOT)!r})
        from pathlib import Path
        from includes.runtime import run_lock
        with run_lock("job", Path({str(tmp_path)!r})) as got:
            print(got, flush=True)
            time.sleep(30)
        """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "True"
        with run_lock("job", tmp_path) as acquired:
            assert not acquired
    finally:
        holder.kill()
        holder.wait()
    with run_lock("job", tmp_path) as acquired:  # the kernel released it with the process
        assert acquired


def test_secrets_are_redacted_in_log_files(tmp_path):
    register_secret("S3CR3T-value-42")
    assert redact("key S3CR3T-value-42 here") == "key *** here"
    setup_logging("unit", tmp_path)
    logging.getLogger("crontrader.test").warning("signing with %s", "S3CR3T-value-42")
    try:
        raise ValueError("bad S3CR3T-value-42")
    except ValueError:
        logging.getLogger("crontrader.test").exception("failed")
    logging.shutdown()
    text = (tmp_path / "unit.log").read_text()
    assert "signing with ***" in text
    assert "S3CR3T" not in text


def test_each_test_starts_with_no_secret_registered():
    assert not redaction._secrets           # the autouse fixture of conftest.py
    register_secret("abcd", None, "xyz")    # None and short strings are never secrets
    assert redact("abcd xyz") == "*** xyz"
    redaction.forget_secrets()
    assert redact("abcd") == "abcd"


def test_url_passwords_are_masked():
    assert masked("mysql+pymysql://u:pw@h/db?x=1") == "mysql+pymysql://u:***@h/db?x=1"
    assert masked("redis://:p@ss w@h:x/0") == "redis://:***@h:x/0"   # to the last @, even malformed
    assert masked("mysql+pymysql//u:pw@h/db") == "mysql+pymysql//u:***@h/db"   # the scheme's colon missing
    assert masked("sqlite:///tmp/x.db and mysql://u@h/db") == "sqlite:///tmp/x.db and mysql://u@h/db"


def test_stop_and_dry_run_files(tmp_path):
    cfg = Config.from_dict({"trading": {"dry_run": False, "stop_file": str(tmp_path / "stop"),
                                        "dry_run_file": str(tmp_path / "dry")}})
    assert not stop_requested(cfg)
    assert not dry_run_requested(cfg)
    (tmp_path / "stop").touch()
    (tmp_path / "dry").touch()
    assert stop_requested(cfg)
    assert dry_run_requested(cfg)
    assert dry_run_requested(Config())  # the default config is a dry run

"""Nothing fails silently under cron: every failed run says one line on stderr and exits
non-zero; a store that refused us exits 2 and spools nothing; only an unreachable one spools.

Real processes throughout: the scripts as cron starts them, the real MariaDB with a user
whose password we got wrong, a closed port, a directory the job's user cannot write.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import uuid
from pathlib import Path

import pymysql
import pytest
import yaml

from includes.errors import cause

ROOT = Path(__file__).resolve().parent.parent
NOBODY = 65534


def run_job(script: str, config: Path, python: str = sys.executable, user: int | None = None,
            ) -> subprocess.CompletedProcess:
    """`script` as cron runs it: no terminal, stderr captured (what cron would mail)."""
    command = [python, str(ROOT / script), "--config", str(config)]
    if user is not None:
        command = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *command]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, cwd="/")


def spooled(tmp_path: Path) -> list[Path]:
    spool = tmp_path / "tmp" / "spool"
    return sorted(spool.iterdir()) if spool.is_dir() else []


@pytest.fixture
def wrong_password_url(mariadb_url):
    """The test's database, through a real MariaDB user whose password the URL gets wrong."""
    user = f"ct_{uuid.uuid4().hex[:10]}"
    database = mariadb_url.rpartition("/")[2]
    conn = pymysql.connect(host="127.0.0.1", port=3306, user="root", password="", autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute(f"CREATE USER '{user}'@'%' IDENTIFIED BY 'right-pw-1'")
            cur.execute(f"GRANT ALL ON `{database}`.* TO '{user}'@'%'")
        yield f"mysql+pymysql://{user}:wrong-pw-2@127.0.0.1:3306/{database}", user
        with conn.cursor() as cur:
            cur.execute(f"DROP USER IF EXISTS '{user}'@'%'")
    finally:
        conn.close()


@pytest.mark.parametrize("script", ["get_api_data.py", "available_markets.py"])
def test_a_wrong_db_password_exits_2_with_one_line_and_spools_nothing(script, tmp_path, job_config,
                                                                       wrong_password_url):
    url, user = wrong_password_url
    job_config(market_db=url)
    run = run_job(script, tmp_path / "config.yaml")
    assert run.returncode == 2
    [line] = run.stderr.splitlines()
    assert line.startswith(f"{script[:-3]}: market DB mysql+pymysql://{user}:***@127.0.0.1:3306/")
    assert f"Access denied for user '{user}'" in line and "wrong-pw-2" not in line
    assert spooled(tmp_path) == []
    record = json.loads((tmp_path / "tmp" / "runs" / f"{script[:-3]}.json").read_text())
    assert (record["status"], record["message"], record["last_success"]) == (2, line.partition(": ")[2], None)


def test_an_unknown_database_exits_2_and_spools_nothing(tmp_path, job_config, mariadb_url):
    job_config(market_db=mariadb_url.rpartition("/")[0] + "/ct_never_created")
    run = run_job("get_api_data.py", tmp_path / "config.yaml")
    assert run.returncode == 2
    assert run.stderr.splitlines() == [("get_api_data: market DB mysql+pymysql://root@127.0.0.1:3306/ct_never_created: "
                                        "(1049, \"Unknown database 'ct_never_created'\")")]
    assert spooled(tmp_path) == []


def test_a_closed_port_is_unreachable_and_spools_the_cycle(tmp_path, job_config, closed_port):
    job_config(market_db=f"mysql+pymysql://crontrader:pw-3@127.0.0.1:{closed_port}/market")
    run = run_job("get_api_data.py", tmp_path / "config.yaml")
    assert run.returncode == 0, run.stderr
    assert len(spooled(tmp_path)) == 1 + 1 + 5   # the listing, the tickers, a candle batch per market
    rows = sum(len(p.read_text().splitlines()) - 1 for p in spooled(tmp_path))
    [line] = run.stderr.splitlines()             # cron mails the backlog
    assert re.fullmatch(rf"get_api_data: the spool holds 7 batches, {rows} rows, \d+\.\d MB, the oldest 0 min old: "
                        "the market DB was unreachable; the next run that reaches it writes them", line), line

    again = run_job("get_api_data.py", tmp_path / "config.yaml")  # the same candles fetched again: spooled once
    assert again.returncode == 0, again.stderr
    assert len(spooled(tmp_path)) <= 1 + 2 + 5
    assert sum(p.name.endswith("-upsert_markets.jsonl") for p in spooled(tmp_path)) == 1  # the newest listing
    candles = [(json.loads(lines[0])["args"]["market"], json.loads(line)["ts"])
               for lines in (p.read_text().splitlines() for p in spooled(tmp_path)
                             if p.name.endswith("-upsert_candles.jsonl")) for line in lines[1:]]
    assert len(candles) == len(set(candles)) >= 5 * 720, "a candle spooled twice"


@pytest.fixture
def unwritable_dir():
    """A directory (and a log/ and tmp/ beside it) owned by root, mode 555, for a job run as nobody.

    Root writes anywhere, so the job runs as nobody; pytest's own tmp_path is closed to nobody.
    """
    base = Path(tempfile.mkdtemp(prefix="ct-ro-"))
    base.chmod(0o755)
    (base / "ro").mkdir(mode=0o555)
    (base / "ro").chmod(0o555)
    for writable in ("log", "tmp", "img"):
        (base / writable).mkdir()
        os.chown(base / writable, NOBODY, NOBODY)
    yield base
    shutil.rmtree(base)


@pytest.mark.skipif(os.geteuid() != 0, reason="runs the job as nobody, which needs root")
def test_a_sqlite_db_in_an_unwritable_directory_exits_2_naming_it(unwritable_dir, kraken_venue):
    config = unwritable_dir / "config.yaml"
    config.write_text(yaml.safe_dump({
        "paths": {name: str(unwritable_dir / name) for name in ("log", "tmp", "img")},
        "exchange": {"api_url": kraken_venue.sim.url, "timeout": 2, "retries": 1},
        "storage": {"market_db": f"sqlite:///{unwritable_dir / 'ro' / 'market.db'}",
                    "state": f"sqlite:///{unwritable_dir / 'tmp' / 'state.db'}"}}))
    config.chmod(0o644)
    run = run_job("get_api_data.py", config, user=NOBODY)
    assert run.returncode == 2
    assert run.stderr.splitlines() == [
        f"get_api_data: market DB sqlite:///{unwritable_dir / 'ro' / 'market.db'}: unable to open database file"]
    assert not (unwritable_dir / "tmp" / "spool").exists()


def test_a_setting_a_run_cannot_use_is_one_line_naming_the_config_file_and_the_key(tmp_path, job_config):
    """Found after loading (live trading without a key file), it names the file as the loader's problems do."""
    job_config(exchange={"key_file": None}, trading={"dry_run": False})
    run = run_job("trade_agent.py", tmp_path / "config.yaml")
    assert run.returncode == 2
    assert run.stderr.splitlines() == [
        f"trade_agent: {tmp_path / 'config.yaml'}: exchange.key_file: live trading needs an API key file"]


def test_an_unexpected_exception_is_one_line_naming_it_and_the_log(tmp_path, job_config):
    job_config()
    script = tmp_path / "boom.py"
    script.write_text(textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(ROOT)!r})
        from includes.runtime import run_script

        def run(cfg, args):
            {{}}["missing"]

        run_script("boom", "fails", run)
        """))
    run = subprocess.run([sys.executable, str(script), "--config", str(tmp_path / "config.yaml")],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 1
    assert run.stderr.splitlines() == [
        f"boom: unexpected KeyError: 'missing' (traceback in {tmp_path / 'log' / 'boom.log'})"]
    assert "Traceback (most recent call last)" in (tmp_path / "log" / "boom.log").read_text()


SYSTEM_PYTHON = "/usr/bin/python3"


def _system_python_lacks_krakenex() -> bool:
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        return False
    probe = subprocess.run([SYSTEM_PYTHON, "-c", "import yaml, krakenex"], capture_output=True, text=True)
    return "No module named 'krakenex'" in probe.stderr


@pytest.mark.skipif(not _system_python_lacks_krakenex(),
                    reason="needs a system python with PyYAML and without krakenex (Debian's)")
def test_the_system_python_through_the_shebang_says_what_is_missing(tmp_path, job_config):
    """The issue's case: cron started the script with the system python, which lacks krakenex."""
    job_config()
    run = run_job("get_api_data.py", tmp_path / "config.yaml", python=SYSTEM_PYTHON)
    assert run.returncode == 1
    [line] = run.stderr.splitlines()
    assert re.fullmatch(rf"get_api_data: unexpected ModuleNotFoundError: No module named '\w+' under "
                        rf"{SYSTEM_PYTHON}: run it with the venv's python "
                        rf"\(traceback in {tmp_path / 'log' / 'get_api_data.log'}\)", line), line


def test_a_cause_is_shortened_never_cut(closed_port):
    """requests' wrapping of a DNS failure, a refused connection and a TLS failure: the host and the
    root cause stay, the URL (a long query string) and the object addresses go."""
    import requests

    long_query = "?pair=" + ",".join(["XXBTZEUR"] * 60)
    cases = {f"http://no-such-host.invalid/0/public/Ticker{long_query}":
             "no-such-host.invalid:80: Failed to resolve 'no-such-host.invalid' ([Errno ",
             f"http://127.0.0.1:{closed_port}/0/public/Ticker{long_query}":
             f"127.0.0.1:{closed_port}: Failed to establish a new connection: [Errno 111] Connection refused",
             "https://127.0.0.1:3306/0/public/Time": "127.0.0.1:3306: SSLError(1, '[SSL: "}
    for url, expected in cases.items():
        with pytest.raises(requests.RequestException) as caught:
            requests.get(url, timeout=5)
        assert cause(caught.value).startswith(expected), cause(caught.value)
        assert "XXBTZEUR" not in cause(caught.value) and " object at 0x" not in cause(caught.value)


@pytest.mark.services   # the shared Redis, by URL: no fixture tells tests/conftest.py
def test_a_refused_redis_login_exits_2_naming_the_server(tmp_path, job_config):
    """The agent's state store refuses us: one line, exit 2, nothing traded."""
    job_config(state="redis://crontrader:wrong-pw-5@127.0.0.1:6379/0")
    run = run_job("trade_agent.py", tmp_path / "config.yaml")
    assert run.returncode == 2
    [line] = run.stderr.splitlines()
    assert line.startswith("trade_agent: Redis at 127.0.0.1:6379/0: ") and "wrong-pw-5" not in line
    assert "invalid username-password pair" in line

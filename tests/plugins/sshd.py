"""A real OpenSSH server on loopback, as the backup's remote host.

    sshd.destination("/some/dir")   # "root@127.0.0.1:/some/dir"
    sshd.key_file, sshd.known_hosts, sshd.port

Debian's sshd on a free port, with a host key and a user key made for the test,
run from a config file in the test's directory; the login is the current user's.
"""
from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


@dataclass(frozen=True)
class SSHServer:
    port: int
    user: str
    key_file: Path
    known_hosts: Path

    def destination(self, path: Path | str) -> str:
        return f"{self.user}@127.0.0.1:{path}"

    def backup_config(self, path: Path | str) -> dict:
        """The config's backup: section that reaches `path` on this server."""
        return {"destination": self.destination(path), "ssh_port": self.port, "ssh_key_file": str(self.key_file),
                "known_hosts_file": str(self.known_hosts), "timeout": 10}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _keygen(path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "crontrader-test", "-f", str(path)],
                   check=True)
    return path.with_suffix(".pub").read_text().strip()


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[SSHServer]:
    if not os.access(SSHD, os.X_OK):
        pytest.fail(f"{SSHD} is missing: run tests/setup.sh (Debian package openssh-server)")
    base = tmp_path / "sshd"
    base.mkdir()
    host_pub = _keygen(base / "host_key")
    user_pub = _keygen(base / "user_key")
    (base / "authorized_keys").write_text(user_pub + "\n")
    port = free_port()
    (base / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_pub}\n")
    (base / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {base / 'host_key'}\n"
        f"AuthorizedKeysFile {base / 'authorized_keys'}\nPidFile {base / 'sshd.pid'}\n"
        "StrictModes no\nUsePAM no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "PermitRootLogin prohibit-password\nLogLevel ERROR\n")
    if os.geteuid() == 0:
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)   # its privilege separation directory
    log = open(base / "sshd.log", "wb")  # noqa: SIM115 -- sshd writes it while the fixture lives
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(base / "sshd_config")], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 10
        while True:
            if proc.poll() is not None:
                pytest.fail(f"sshd exited with status {proc.returncode}: {(base / 'sshd.log').read_text()}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail("sshd did not listen within 10 s")
                time.sleep(0.05)
        yield SSHServer(port, getpass.getuser(), base / "user_key", base / "known_hosts")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()

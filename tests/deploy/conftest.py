"""A real OpenSSH server on loopback stands in for a device: a throwaway host key and user key,
a config of its own (no PAM, keys from tmp, StrictModes off), run as a non-daemon child. The
"device" is this machine, so its python is this venv's (numpy + onnxruntime + tokenizers)."""
from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest


def _sshd_binary() -> str | None:
    return shutil.which("sshd") or next((p for p in ("/usr/sbin/sshd", "/usr/local/sbin/sshd") if os.access(p, os.X_OK)), None)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "dsedge-test", "-f", str(path)], check=True)


@dataclass
class Sshd:
    port: int
    dir: Path
    host_key: Path
    user_key: Path
    known_hosts: Path
    user: str
    proc: subprocess.Popen

    @property
    def address(self) -> str:
        return f"{self.user}@127.0.0.1:{self.port}"

    def kwargs(self, root: Path, **extra) -> dict:
        """dsedge.deploy keyword arguments for this device with device root `root`."""
        return {"root": str(root), "python": sys.executable, "known_hosts": self.known_hosts,
                "identity": self.user_key, **extra}


@pytest.fixture(scope="session")
def sshd(tmp_path_factory):
    binary = _sshd_binary()
    if binary is None or shutil.which("ssh") is None:
        pytest.skip("OpenSSH server/client not found (apt-get install openssh-server openssh-client; .ci/run does)")
    d = tmp_path_factory.mktemp("sshd")
    host_key, user_key = d / "host_key", d / "user_key"
    _keygen(host_key)
    _keygen(user_key)
    shutil.copy(f"{user_key}.pub", d / "authorized_keys")
    port = _free_port()
    (d / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {host_key}\nPidFile {d}/sshd.pid\n"
        f"AuthorizedKeysFile {d}/authorized_keys\nStrictModes no\nUsePAM no\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nPermitRootLogin yes\nLogLevel ERROR\nMaxStartups 50\nMaxSessions 50\n")
    Path("/run/sshd").mkdir(exist_ok=True)   # privilege separation directory sshd insists on
    proc = subprocess.Popen([binary, "-D", "-e", "-f", str(d / "sshd_config")], stdout=subprocess.DEVNULL,
                            stderr=open(d / "sshd.log", "w"))
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            if proc.poll() is not None:
                pytest.fail(f"sshd exited: {(d / 'sshd.log').read_text()}")
            time.sleep(0.05)
    known = d / "known_hosts"
    known.write_text(f"[127.0.0.1]:{port} {Path(f'{host_key}.pub').read_text()}")
    yield Sshd(port, d, host_key, user_key, known, getpass.getuser(), proc)
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture(scope="session")
def artifacts(built, tmp_path_factory):
    """Two tiny artifacts whose manifests differ (so their release ids do): the suite's shared
    INT4 RTN build (read only) and a copy of it re-manifested with a note."""
    from dsedge.artifact import read_manifest, write_manifest

    a = built("qwen2-tiny", "rtn").path
    b = tmp_path_factory.mktemp("deploy-artifacts") / "b"
    shutil.copytree(a, b)
    m = read_manifest(b)
    fields = {k: v for k, v in m.items() if k not in ("manifest_version", "created_unix", "versions", "files")}
    (b / "manifest.json").unlink()
    write_manifest(b, **fields, note="second release for the deploy tests")
    return a, b

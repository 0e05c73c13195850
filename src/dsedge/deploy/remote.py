"""Calls into device/remote.py over SSH: `python3 -c BOOT <command> <root> ...`, the script's
source on stdin ahead of any payload, one JSON line back."""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from .errors import DeviceError
from .ssh import Ssh

# Reads a length line, then that many bytes of source, and runs them as __main__; the rest of
# stdin stays for the script (uploads). Nothing has to be installed on the device beforehand.
BOOT = ("import sys;b=sys.stdin.buffer;n=int(b.readline());"
        "exec(compile(b.read(n),'dsedge-remote','exec'))")
SCRIPT = Path(__file__).with_name("device") / "remote.py"


@lru_cache(maxsize=1)
def _script() -> bytes:
    src = SCRIPT.read_bytes()
    return f"{len(src)}\n".encode() + src


def last_json(stdout: bytes) -> dict:
    for line in reversed(stdout.decode(errors="replace").strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    return {}


class DeviceSide:
    """The device root on one device, driven through its own python."""

    def __init__(self, ssh: Ssh, root: str, python: str = "python3"):
        self.ssh, self.root, self.python = ssh, root, python

    def argv(self, cmd: str, *args: str) -> list[str]:
        return [self.python, "-c", BOOT, cmd, self.root, *args]

    def call(self, cmd: str, *args: str, payload: bytes = b"", timeout: float | None = 600,
             what: str | None = None, check: bool = True):
        r = self.ssh.run(self.argv(cmd, *args), stdin=_script() + payload, timeout=timeout)
        if check and r.returncode != 0:
            err = r.stderr.decode(errors="replace").strip()
            raise DeviceError(f"{self.ssh.address}: {what or cmd} failed on the device (exit {r.returncode}): "
                              f"{err[-1500:] or '(no message)'}",
                              f"fix the cause on the device and flash again (python there: {self.python})")
        return last_json(r.stdout) if check else r

    def stream(self, cmd: str, args: list[str], chunks, on_chunk=None):
        def all_chunks():
            yield _script()
            yield from chunks
        return self.ssh.stream(self.argv(cmd, *args), all_chunks(), on_chunk)

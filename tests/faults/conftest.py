"""Fault injection through the real CLI: each test breaks one thing a careless or hostile user
could, and asserts the exit code, the message, and that no file outside dsedge's own folders
changed."""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest


def dsedge(*args, cache: Path | None = None, timeout: int = 900, **kw) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if cache is not None:
        env["DSEDGE_CACHE_DIR"] = str(cache)
    return subprocess.run([sys.executable, "-m", "dsedge", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=timeout, **kw)


def start(*args, cache: Path) -> subprocess.Popen:
    env = {**os.environ, "DSEDGE_CACHE_DIR": str(cache)}
    return subprocess.Popen([sys.executable, "-m", "dsedge", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def tree(folder: Path) -> dict[str, str]:
    """relative path -> sha256 of every file under folder."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(Path(folder).rglob("*")) if p.is_file()}


def flip_byte(path: Path, at: float = 0.5) -> None:
    """One byte changed in place (dd conv=notrunc): same size, same inode."""
    with open(path, "r+b") as f:
        f.seek(int(path.stat().st_size * at))
        b = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([b[0] ^ 0xFF]))


def refused(r: subprocess.CompletedProcess, *words: str) -> None:
    """Exit 2, one message naming the problem, no traceback."""
    assert r.returncode == 2, (r.returncode, r.stdout[-2000:], r.stderr[-3000:])
    assert "Traceback" not in r.stderr, r.stderr[-3000:]
    for w in words:
        assert w in r.stderr, (w, r.stderr[-2000:])


@pytest.fixture
def cache(tmp_path) -> Path:
    return tmp_path / "cache"

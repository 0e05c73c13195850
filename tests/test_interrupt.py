"""Ctrl-C and SIGTERM during a real `dsedge build` leave no artifact and no temporary folder;
the rerun reuses the stages that had finished, and says so."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.slow


def _start(out, cache, *extra):
    env = {**os.environ, "DSEDGE_CACHE_DIR": str(cache)}
    return subprocess.Popen([sys.executable, "-m", "dsedge", "build", "--bits", "4", "-o", str(out), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _wait_for(p, cond, what):
    deadline = time.time() + 180
    while not cond():
        if p.poll() is not None:
            raise AssertionError(f"build ended before {what}: {p.stderr.read()}")
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupt_during_export_then_resume(tmp_path, sig, code):
    work, cache = tmp_path / "work", tmp_path / "cache"
    work.mkdir()
    out = work / "art"
    p = _start(out, cache)
    _wait_for(p, lambda: list(work.glob(".art.partial-*")), "the export stage")   # staging exists from export on
    p.send_signal(sig)
    _, err = p.communicate(timeout=120)
    assert p.returncode == code, err
    assert "interrupted" in err and "Traceback" not in err and len(err.strip().splitlines()[-1]) < 200
    assert not out.exists() and not list(work.iterdir()), list(work.iterdir())
    assert not list(cache.glob("export/*/meta.json"))        # nothing half-finished was cached
    r = subprocess.run([sys.executable, "-m", "dsedge", "build", "--bits", "4", "-o", str(out)],
                       capture_output=True, text=True, env={**os.environ, "DSEDGE_CACHE_DIR": str(cache)}, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "reused from cache" not in r.stderr and (out / "manifest.json").is_file()


def test_interrupt_after_export_reuses_it(tmp_path):
    work, cache = tmp_path / "work", tmp_path / "cache"
    work.mkdir()
    out = work / "art"
    p = _start(out, cache)
    _wait_for(p, lambda: list(cache.glob("export/*/meta.json")), "the export to finish")  # now in validate/check
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 130, err
    assert not out.exists() and not list(work.iterdir())
    env = {**os.environ, "DSEDGE_CACHE_DIR": str(cache)}
    cmd = [sys.executable, "-m", "dsedge", "build", "--bits", "4", "-o", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "reused from cache: export" in r.stderr
    fresh = subprocess.run(cmd + ["--overwrite", "--no-cache"], capture_output=True, text=True, env=env, timeout=600)
    assert fresh.returncode == 0 and "reused from cache" not in fresh.stderr

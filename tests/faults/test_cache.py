"""Every reused byte is verified: an artifact shares no storage with the cache, and a changed or
truncated cache entry is dropped, rebuilt and said in one line."""
from __future__ import annotations

import json

import pytest

from .conftest import dsedge, flip_byte, tree

pytestmark = pytest.mark.slow
BUILD = ("build", "--bits", "4", "--no-latency")


def _sha(folder, name="model.onnx"):
    return json.loads((folder / "manifest.json").read_text())["files"][name]["sha256"]


def test_cache_entries_are_copies_and_are_verified_on_every_read(tmp_path, cache):
    work = tmp_path / "work"
    work.mkdir()
    for stale in (".a.partial-999999999", ".a.check-999999999-x1y2"):   # left by a build killed with SIGKILL
        (work / stale).mkdir()
        (work / stale / "model.onnx").write_bytes(b"half")
    r = dsedge(*BUILD, "-o", work / "a", cache=cache)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "removed .a.partial-999999999, left by an interrupted build" in r.stderr
    assert sorted(p.name for p in work.iterdir()) == ["a"]
    entry = next(cache.glob("export/*/model.onnx"))
    art = work / "a" / "model.onnx"
    assert art.stat().st_nlink == 1 and entry.stat().st_ino != art.stat().st_ino
    original = _sha(work / "a")

    # an artifact edited in place changes neither the cache nor the next artifact
    flip_byte(art)
    r = dsedge(*BUILD, "-o", work / "b", cache=cache)
    assert r.returncode == 0 and "reused from cache: export" in r.stderr, r.stderr[-3000:]
    assert _sha(work / "b") == original and tree(work / "b")["model.onnx"] == original

    # a changed byte in the cache entry (and in the stored reference logits): dropped and rebuilt
    flip_byte(entry)
    logits = next(cache.glob("reference_logits/*/logits.npz"))
    flip_byte(logits, 0.9)
    r = dsedge(*BUILD, "-o", work / "c", cache=cache)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "failed verification (model.onnx does not match its sha256): dropped and rebuilt" in r.stderr
    assert "failed verification (logits.npz does not match its sha256): dropped and rebuilt" in r.stderr
    assert "Traceback" not in r.stderr and "reused from cache: export" not in r.stderr
    assert tree(work / "c")["model.onnx"] == _sha(work / "c")
    assert len(json.loads((work / "c" / "report.json").read_text())["housekeeping"]) == 2

    # a truncated entry (the rebuilt one), and a changed byte in the trace its rebuild reads
    entry = next(cache.glob("export/*/model.onnx"))
    stored = entry.stat().st_size
    with open(entry, "r+b") as f:
        f.truncate(stored // 2)
    flip_byte(next(cache.glob("trace/*/trace.onnx")))
    r = dsedge(*BUILD, "-o", work / "d", cache=cache)
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"(model.onnx is {stored // 2} bytes, {stored} were stored)" in r.stderr
    assert "cache entry trace/" in r.stderr and "(trace.onnx does not match its sha256)" in r.stderr
    assert tree(work / "d")["model.onnx"] == _sha(work / "d")

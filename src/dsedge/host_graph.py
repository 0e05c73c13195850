"""Where an artifact's host graph is (export/host.py writes it): the stage cache, keyed on
model.onnx's sha256, every file verified as it is read; written in a child process when missing.
This module imports neither torch nor onnx (importing dsedge.export costs ~260 MB of RSS), so the
process that decodes (`dsedge bench`, `dsedge run`) holds only onnxruntime and the model."""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from .cache import StageCache, cache_key, file_digest
from .errors import UsageError

HOST_VERSION = 1                   # bump when the graph export/host.py writes changes
HOST_DATA = "model.host.onnx.data"
LEVELS = (0, 1, 2, 3, 4)           # MatMulNBits accuracy levels: one small graph file each, one data file
UNHOSTABLE_EXIT = 3                 # exit status of `python -m dsedge.export.host` for Unhostable


def host_file(level: int) -> str:
    """The graph whose MatMulNBits run at `level` (an attribute of each node: the session entry
    session.qdq_matmulnbits_accuracy_level only reaches the ones onnxruntime fuses itself)."""
    return f"model.host.a{level}.onnx"


class Unhostable(Exception):
    """This artifact has no host graph; the message says why (the standard graph runs instead)."""


def host_graph(folder: Path, accuracy_level: int = 1, cache=None) -> Path:
    """The artifact's host graph at `accuracy_level`, from the stage cache (stage "host-graph",
    keyed on model.onnx's sha256 as the manifest records it, every file verified as it is read)
    or written there now. model.onnx is checked against the manifest first. Raises Unhostable."""
    folder = Path(folder)
    if accuracy_level not in LEVELS:
        raise UsageError(f"accuracy level {accuracy_level} is not one of {LEVELS}", "pass --accuracy-level 0-4")
    try:
        files = json.loads((folder / "manifest.json").read_text()).get("files") or {}
    except (OSError, ValueError) as e:
        raise UsageError(f"{folder}/manifest.json cannot be read ({e})", "pass an artifact folder from dsedge build") from None
    graph = {n: r for n, r in files.items() if n == "model.onnx" or n.startswith("model.onnx.")}
    if "model.onnx" not in graph:
        raise UsageError(f"{folder}/manifest.json lists no model.onnx", "rebuild the artifact with dsedge build")
    for name, rec in sorted(graph.items()):
        p = folder / name
        if file_digest(p) != {"sha256": rec.get("sha256"), "size": rec.get("bytes")}:
            raise UsageError(f"{p} does not match the sha256 in {folder}/manifest.json",
                             "rebuild the artifact (dsedge build), or fetch it again")
    if cache is None or not cache.enabled:   # the host graph lives only in the cache: derived, never shipped
        cache = StageCache(root=cache.root if cache is not None else None)
    key = cache_key("host-graph", HOST_VERSION, sorted((n, r["sha256"]) for n, r in graph.items()))
    entry = cache.get("host-graph", key)
    if entry is None:
        cache.root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=cache.root, prefix=".host-graph-") as tmp:
            meta = _write_in_child(folder, Path(tmp))
            cache.put("host-graph", key, [Path(tmp) / host_file(lv) for lv in LEVELS] + [Path(tmp) / HOST_DATA],
                      {"artifact": str(folder), **meta})
        entry = cache.get("host-graph", key)
        if entry is None:
            raise UsageError(f"the host graph could not be stored in {cache.root}",
                             "free disk space there or set DSEDGE_CACHE_DIR to a writable folder")
    return entry / host_file(accuracy_level)


def _write_in_child(folder: Path, out: Path) -> dict:
    """write_host_graph in a process of its own: its model.onnx reading, transformers and torch
    (the rotary tables) stay out of the caller, whose peak RSS `dsedge bench` reports."""
    r = subprocess.run([sys.executable, "-m", "dsedge.export.host", str(folder), str(out)],
                       capture_output=True, text=True)
    if r.returncode == UNHOSTABLE_EXIT:
        raise Unhostable(r.stdout.strip().splitlines()[-1])
    if r.returncode:
        raise RuntimeError(f"writing the host graph of {folder} failed:\n{r.stderr[-3000:]}")
    return json.loads((out / "meta.json").read_text())

"""A stage cache, so that a rerun after an interruption reuses what was finished.

Entries live under $DSEDGE_CACHE_DIR (default ~/.cache/dsedge), one folder per stage and key;
the key hashes everything the stage's output depends on (checkpoint sha256, settings, dsedge
version). An entry is written in a temporary folder and renamed into place, so a killed run
never leaves a half entry that a later run would trust.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path


def cache_root() -> Path:
    env = os.environ.get("DSEDGE_CACHE_DIR")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "dsedge"


def cache_key(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]


class StageCache:
    def __init__(self, enabled: bool = True, root: Path | None = None):
        self.enabled = enabled
        self.root = root or cache_root()
        self.reused: list[str] = []

    def _dir(self, stage: str, key: str) -> Path:
        return self.root / stage / key

    def get(self, stage: str, key: str) -> Path | None:
        """The entry's folder if a finished one exists."""
        if not self.enabled:
            return None
        d = self._dir(stage, key)
        return d if (d / "meta.json").is_file() else None

    def put(self, stage: str, key: str, files: list[Path], meta: dict) -> None:
        """Store files (hard-linked where the filesystem allows, else copied) and meta."""
        if not self.enabled:
            return
        final = self._dir(stage, key)
        tmp = final.parent / f".{key}.tmp-{os.getpid()}"
        try:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            for f in files:
                _link_or_copy(f, tmp / f.name)
            (tmp / "meta.json").write_text(json.dumps(meta, default=str))
            shutil.rmtree(final, ignore_errors=True)
            os.rename(tmp, final)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)  # a cache that cannot be written is only slower

    def restore(self, entry: Path, dest: Path, stage: str) -> dict:
        """Link the entry's files into dest; return its meta."""
        for f in entry.iterdir():
            if f.name != "meta.json":
                _link_or_copy(f, dest / f.name)
        self.reused.append(stage)
        return json.loads((entry / "meta.json").read_text())


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


class CachedLogits:
    """The FP16 reference's logits, computed once per (checkpoint, eval data, scope) and reused by
    every later build (`dsedge compare` runs several methods against one reference).

    Wraps a logits function ids (B, T) -> (B, T, V); results are kept by the ids' bytes and
    stored as one .npz entry (float32) when `save()` is called. Models whose logits would pass
    `max_bytes` are not cached (a 150k-vocabulary model would need gigabytes)."""

    def __init__(self, fn, cache: StageCache, key: str, max_bytes: int = 256 * 2**20):
        import numpy as np

        self.fn, self.cache, self.key, self.max_bytes = fn, cache, key, max_bytes
        self.table: dict[bytes, "np.ndarray"] = {}
        self.dirty = False
        self.overflow = False   # more than max_bytes: nothing is kept (a big vocabulary's logits are not held)
        entry = cache.get("reference_logits", key)
        if entry:
            with np.load(entry / "logits.npz") as z:
                self.table = {bytes.fromhex(k): z[k] for k in z.files}
            cache.reused.append("reference logits")

    def __call__(self, ids):
        k = hashlib.sha1(ids.tobytes() + str(ids.shape).encode()).digest()
        if k in self.table:
            return self.table[k]
        out = self.fn(ids)
        if not self.overflow:
            if sum(v.nbytes for v in self.table.values()) + out.nbytes > self.max_bytes:
                self.overflow, self.table = True, {}
            else:
                self.table[k], self.dirty = out, True
        return out

    def save(self, scratch: Path) -> None:
        import numpy as np

        if not self.dirty or self.overflow or not self.cache.enabled:
            return
        path = Path(scratch) / "logits.npz"
        np.savez(path, **{k.hex(): v for k, v in self.table.items()})
        self.cache.put("reference_logits", self.key, [path], {"entries": len(self.table)})

"""A stage cache, so that a rerun after an interruption reuses what was finished.

Entries live under $DSEDGE_CACHE_DIR (default ~/.cache/dsedge), one folder per stage and key;
the key hashes everything the stage's output depends on (checkpoint sha256, settings, dsedge
version). An entry is written in a temporary folder and renamed into place, so a killed run
never leaves a half entry that a later run would trust.

No byte is trusted: meta.json records the sha256 and size of every file of the entry, and a file
is checked against them whenever it is read back (a mismatch, a truncated or a missing file drops
the entry, which is rebuilt, and `notes` says so in one line). Entries never share storage with
an artifact: files are cloned (copy-on-write, where the filesystem offers it) or copied, never
hard-linked, so editing an artifact in place cannot change the cache or another artifact.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

_CHUNK = 8 << 20


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
        self.notes: list[str] = []     # entries dropped because they failed verification

    def _dir(self, stage: str, key: str) -> Path:
        return self.root / stage / key

    def get(self, stage: str, key: str, verify: bool = True) -> Path | None:
        """The entry's folder if a finished one exists and every file matches its recorded
        sha256. verify=False: only its record is read (restore() verifies while it copies)."""
        if not self.enabled:
            return None
        d = self._dir(stage, key)
        if not (d / "meta.json").is_file():
            return None
        try:
            files = json.loads((d / "meta.json").read_text())["files"]
            assert isinstance(files, dict) and files
        except (OSError, ValueError, KeyError, TypeError, AssertionError):
            return self._drop(d, stage, "its record (meta.json) is unreadable or from an older dsedge")
        if verify:
            for name, want in files.items():
                got = _sha256(d / name)
                if got != want:
                    return self._drop(d, stage, f"{name} {_mismatch(got, want)}")
        return d

    def _drop(self, entry: Path, stage: str, why: str) -> None:
        self.notes.append(f"cache entry {stage}/{entry.name} failed verification ({why}): dropped and rebuilt")
        shutil.rmtree(entry, ignore_errors=True)
        return None

    def put(self, stage: str, key: str, files: list[Path], meta: dict) -> None:
        """Store copies of files (cloned where the filesystem can) with their sha256, and meta."""
        if not self.enabled:
            return
        final = self._dir(stage, key)
        tmp = final.parent / f".{key}.tmp-{os.getpid()}"
        try:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            record = {f.name: copy_verified(f, tmp / f.name) for f in files}
            (tmp / "meta.json").write_text(json.dumps({**meta, "files": record}, default=str))
            shutil.rmtree(final, ignore_errors=True)
            os.rename(tmp, final)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)  # a cache that cannot be written is only slower

    def restore(self, entry: Path, dest: Path, stage: str) -> dict | None:
        """Copy the entry's files into dest, checking each against its sha256 as it is copied;
        -> its meta, or None (entry dropped, the copies removed) when a file does not match."""
        meta = json.loads((entry / "meta.json").read_text())
        files = meta.pop("files")
        done = []
        for name, want in files.items():
            try:
                got = copy_verified(entry / name, dest / name, want)
            except OSError as e:
                got = {"error": e.strerror or str(e)}
            done.append(dest / name)
            if got != want:
                for f in done:
                    f.unlink(missing_ok=True)
                return self._drop(entry, stage, f"{name} {_mismatch(got, want)}")
        self.reused.append(stage)
        return meta


def file_digest(path: Path) -> dict | None:
    """{"sha256", "size"} of a file (None: missing; {"error"}: unreadable), read in 8 MiB chunks."""
    return _sha256(Path(path))


def _mismatch(got: dict | None, want: dict) -> str:
    if got is None:
        return "is missing"
    if "error" in got:
        return f"cannot be read: {got['error']}"
    if got["size"] != want.get("size"):
        return f"is {got['size']} bytes, {want.get('size')} were stored"
    return "does not match its sha256"


def _sha256(path: Path) -> dict | None:
    try:
        h, n = hashlib.sha256(), 0
        with open(path, "rb") as f:
            while chunk := f.read(_CHUNK):
                h.update(chunk)
                n += len(chunk)
    except FileNotFoundError:
        return None
    except OSError as e:
        return {"error": e.strerror or str(e)}
    return {"sha256": h.hexdigest(), "size": n}


def copy_verified(src: Path, dst: Path, want: dict | None = None) -> dict:
    """Copy src to a new file dst, hashing what is read; -> {"sha256", "size"} of the bytes written.
    A copy-on-write clone (FICLONE) is tried first and then hashed; otherwise the bytes are copied
    in chunks. Never a hard link. want: stop early (size check) when src cannot match it."""
    if want is not None and src.stat().st_size != want.get("size"):
        return {"sha256": None, "size": src.stat().st_size}
    if _clone(src, dst):
        return _sha256(dst)
    h, n = hashlib.sha256(), 0
    with open(src, "rb") as fi, open(dst, "xb") as fo:
        while chunk := fi.read(_CHUNK):
            h.update(chunk)
            fo.write(chunk)
            n += len(chunk)
    shutil.copystat(src, dst)
    return {"sha256": h.hexdigest(), "size": n}


_FICLONE = 0x40049409   # linux/fs.h: _IOW(0x94, 9, int)


def _clone(src: Path, dst: Path) -> bool:
    """A copy-on-write clone (btrfs, XFS, bcachefs): new storage the moment either side is written."""
    try:
        import fcntl
    except ImportError:
        return False
    try:
        with open(src, "rb") as fi, open(dst, "xb") as fo:
            try:
                fcntl.ioctl(fo.fileno(), _FICLONE, fi.fileno())
                return True
            except OSError:
                pass
    except OSError:
        return False
    dst.unlink(missing_ok=True)
    return False


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

"""The artifact folder: written in a hidden temporary sibling and renamed into place, so an
error, Ctrl-C or SIGTERM leaves either the finished folder or nothing."""
from __future__ import annotations

import errno
import json
import os
import shutil
import time
from importlib import metadata
from pathlib import Path

from .errors import UsageError
from .load.checkpoint import file_sha256

MANIFEST_VERSION = 1
_VERSIONED = ("dsedge", "torch", "transformers", "onnx", "onnxruntime", "onnxscript", "onnx-ir", "safetensors")


def library_versions() -> dict[str, str]:
    out = {}
    for name in _VERSIONED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


class Artifact:
    """with Artifact(path) as staging: write files into `staging`; renamed to `path` on success.

    dsedge never deletes or replaces what it did not create: the destination is locked for the
    whole build (a second build into the same -o is refused with the first one's process), checked
    again at the moment of the rename, and --overwrite replaces only a folder holding a dsedge
    manifest. `protected`: paths -o must neither be nor contain (the checkpoint, the eval and
    calibration data). Hidden work folders of dead builds into the same -o are removed, and said
    in `notes`."""

    def __init__(self, path: Path, overwrite: bool = False, protected: tuple[Path, ...] = ()):
        self.path = Path(path).absolute()
        self.overwrite = overwrite
        self.protected = tuple(Path(p).absolute() for p in protected if p is not None)
        self.staging = self.path.parent / f".{self.path.name}.partial-{os.getpid()}"
        self.lock_path = self.path.parent / f".{self.path.name}.lock"
        self._lock = None
        self.notes: list[str] = []

    def check_destination(self) -> None:
        """Fail before any work if the artifact could not be written; take the destination's lock."""
        if len(self.path.name.encode()) > 200:   # ".NAME.partial-PID" must fit the 255-byte name limit
            raise UsageError(f"output folder name is {len(self.path.name.encode())} bytes long",
                             "pass -o with a name of at most 200 bytes")
        for p in self.protected:
            if self.path == p or self.path in p.parents:
                raise UsageError(f"output {self.path} is or contains {p}, an input of this build",
                                 "pass -o with a folder outside the checkpoint and the eval / calibration data")
        self._check_existing(when="already exists")
        parent = self.path.parent
        existing = next(p for p in [parent, *parent.parents] if p.exists())
        if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
            raise UsageError(f"cannot write into {existing}", "pass -o with a folder you can write to")
        self._acquire()

    def _check_existing(self, when: str) -> None:
        if self.path.is_symlink() or (self.path.exists() and not self.path.is_dir()):
            raise UsageError(f"output {self.path} {when} and is not a folder", "pass -o with a folder path")
        if not self.path.exists() or not any(self.path.iterdir()):
            return   # nothing there, or an empty folder: nothing of anyone's is replaced
        if not (self.path / "manifest.json").is_file():
            raise UsageError(f"output {self.path} {when} and is not a dsedge artifact (no manifest.json)",
                             "pass another -o folder: dsedge replaces only folders it wrote")
        if not self.overwrite:
            raise UsageError(f"output {self.path} {when}", "pass --overwrite, or another -o folder")

    def _acquire(self) -> None:
        """An exclusive lock on .NAME.lock next to the destination, held until the build ends."""
        import fcntl

        if self._lock is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            f = open(self.lock_path, "a+")
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                f.seek(0)
                holder = f.read().strip() or "another process"
                f.close()
                raise UsageError(f"output {self.path} is being written by {holder}",
                                 "wait for that build to finish, or pass another -o folder") from None
            try:   # the holder before us may have removed the file: lock the one on disk
                same = os.fstat(f.fileno()).st_ino == os.stat(self.lock_path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            f.close()
        f.seek(0)
        f.truncate()
        f.write(f"process {os.getpid()} (dsedge build)\n")
        f.flush()
        self._lock = f
        self._remove_stale()

    def release(self) -> None:
        if self._lock is not None:
            self.lock_path.unlink(missing_ok=True)
            self._lock.close()
            self._lock = None

    def _remove_stale(self) -> None:
        """Work folders of earlier builds into this -o: with the lock held, none is in use."""
        mine = {self.staging.name}
        for kind in ("partial", "check", "old"):
            for p in self.path.parent.glob(f".{self.path.name}.{kind}-*"):
                if p.name not in mine and p.is_dir() and not p.is_symlink() and _pid_dead(p.name):
                    shutil.rmtree(p, ignore_errors=True)
                    self.notes.append(f"removed {p.name}, left by an interrupted build")

    def __enter__(self) -> Path:
        self.check_destination()
        shutil.rmtree(self.staging, ignore_errors=True)
        self.staging.mkdir()
        return self.staging

    def __exit__(self, exc_type, exc, tb) -> bool:
        try:
            if exc_type is not None:
                shutil.rmtree(self.staging, ignore_errors=True)
                if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
                    raise UsageError(f"no space left on the disk of {self.path.parent} while writing the artifact",
                                     "free space there, or pass -o with a folder on another disk") from None
                return False
            try:   # what is there now, not what was there when the build started
                self._check_existing(when="appeared during the build")
            except UsageError:
                shutil.rmtree(self.staging, ignore_errors=True)
                raise
            old = None
            if self.path.exists():
                old = self.path.parent / f".{self.path.name}.old-{os.getpid()}"
                os.rename(self.path, old)
            os.rename(self.staging, self.path)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
            return False
        finally:
            self.release()


def _pid_dead(name: str) -> bool:
    """name: ".X.partial-PID", ".X.old-PID" or ".X.check-PID-random"; True unless PID is alive."""
    tail = name.rsplit(".", 1)[-1].split("-")
    pid = tail[1] if len(tail) > 1 else ""
    if not pid.isdigit():
        return True
    if int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def write_manifest(folder: Path, **fields) -> dict:
    """manifest.json: the given fields, versions, and the sha256 of every other file."""
    files = {str(p.relative_to(folder)): {"sha256": file_sha256(p), "bytes": p.stat().st_size}
             for p in sorted(folder.rglob("*")) if p.is_file() and p.name != "manifest.json"}
    manifest = {"manifest_version": MANIFEST_VERSION, "created_unix": int(time.time()),
                **fields, "versions": library_versions(), "files": files}
    text = json.dumps(manifest, indent=2, default=str)
    (folder / "manifest.json").write_text(text + "\n")
    return json.loads(text)  # what a reader gets back (tuples as lists, paths as strings)


def verify_artifact(folder: Path, role: str = "artifact", skip: tuple[str, ...] = ()) -> dict:
    """Every file the manifest lists, checked against its size and sha256 (nothing is trusted that
    was changed after dsedge wrote it). -> the manifest; UsageError naming the first file that differs.
    skip: files about to be rewritten (dsedge report's report.md / .html)."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        raise UsageError(f"{role} {folder}: manifest.json lists no files", "rebuild the artifact with dsedge build")
    for name, want in files.items():
        if name in skip:
            continue
        p = folder / name
        if not isinstance(want, dict) or ".." in Path(name).parts or Path(name).is_absolute():
            raise UsageError(f"{role} {folder}: manifest.json entry {name!r} is malformed",
                             "rebuild the artifact with dsedge build")
        if not p.is_file():
            raise UsageError(f"{role} {folder}: {name} is missing (the manifest lists it)",
                             "rebuild the artifact, or copy it again whole")
        size = p.stat().st_size
        if size != want.get("bytes") or file_sha256(p) != want.get("sha256"):
            why = f"is {size} bytes, the manifest says {want.get('bytes')}" if size != want.get("bytes") else \
                "does not match its sha256 in manifest.json"
            raise UsageError(f"{role} {folder}: {name} {why}: it changed after dsedge wrote it",
                             "rebuild the artifact (or copy it again from where it was built)")
    return manifest


def read_manifest(folder: Path) -> dict:
    f = Path(folder) / "manifest.json"
    if not f.is_file():
        raise UsageError(f"{folder} is not a dsedge artifact (no manifest.json)", "pass an artifact folder from `dsedge build`")
    try:
        data = json.loads(f.read_text())
    except (OSError, ValueError) as e:
        raise UsageError(f"{f} is not readable JSON ({e})", "rebuild the artifact with dsedge build") from None
    if not isinstance(data, dict):
        raise UsageError(f"{f} does not hold a JSON object", "rebuild the artifact with dsedge build")
    return data

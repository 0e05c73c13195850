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
    """with Artifact(path) as staging: write files into `staging`; renamed to `path` on success."""

    def __init__(self, path: Path, overwrite: bool = False):
        self.path = Path(path).absolute()
        self.overwrite = overwrite
        self.staging = self.path.parent / f".{self.path.name}.partial-{os.getpid()}"

    def check_destination(self) -> None:
        """Fail before any work if the artifact could not be written."""
        if self.path.exists() and not self.path.is_dir():
            raise UsageError(f"output {self.path} exists and is a file", "pass -o with a folder path")
        if self.path.exists() and not self.overwrite:
            raise UsageError(f"output {self.path} already exists", "pass --overwrite, or another -o folder")
        parent = self.path.parent
        existing = next(p for p in [parent, *parent.parents] if p.exists())
        if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
            raise UsageError(f"cannot write into {existing}", "pass -o with a folder you can write to")

    def __enter__(self) -> Path:
        self.check_destination()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self.staging, ignore_errors=True)
        self.staging.mkdir()
        return self.staging

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is not None:
            shutil.rmtree(self.staging, ignore_errors=True)
            if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise UsageError(f"no space left on the disk of {self.path.parent} while writing the artifact",
                                 "free space there, or pass -o with a folder on another disk") from None
            return False
        old = None
        if self.path.exists():
            old = self.path.parent / f".{self.path.name}.old-{os.getpid()}"
            os.rename(self.path, old)
        os.rename(self.staging, self.path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
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


def read_manifest(folder: Path) -> dict:
    f = Path(folder) / "manifest.json"
    if not f.is_file():
        raise UsageError(f"{folder} is not a dsedge artifact (no manifest.json)", "pass an artifact folder from `dsedge build`")
    return json.loads(f.read_text())

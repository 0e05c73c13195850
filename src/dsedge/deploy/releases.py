"""What a release is made of on the host side: its id and the files shipped into it."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..errors import UsageError

DEVICE_PACKAGE = "dsedge_device"   # device/ is shipped into every release under this name


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_manifest(folder: Path) -> dict:
    """manifest.json of an artifact. (dsedge.artifact has the same reader, but importing it pulls
    torch in through dsedge.load; deploy/ must not.)"""
    import json

    f = Path(folder) / "manifest.json"
    if not f.is_file():
        raise UsageError(f"{folder} is not a dsedge artifact (no manifest.json)",
                         "pass an artifact folder from `dsedge build`")
    try:
        return json.loads(f.read_text())
    except ValueError as e:
        raise UsageError(f"{f} is not valid JSON: {e}", "rebuild the artifact") from None


def artifact_id(folder: Path) -> str:
    """The release id: a short hash of manifest.json, which lists every file's sha256. Two
    artifacts with the same content and metadata get the same id, whatever their folder names."""
    f = Path(folder) / "manifest.json"
    read_manifest(folder)   # the usual error when it is not an artifact
    return hashlib.sha256(f.read_bytes()).hexdigest()[:16]


@dataclass(frozen=True)
class ShipFile:
    name: str          # path inside the release
    path: Path         # on this host
    sha256: str
    size: int


def files_to_ship(folder: Path) -> list[ShipFile]:
    """The artifact's files (checked against the manifest's sha256 before anything is sent),
    manifest.json itself, and the device package."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    out = []
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        raise UsageError(f"{folder}/manifest.json lists no files", "rebuild the artifact (dsedge build)")
    for name, rec in sorted(files.items()):
        parts = PurePosixPath(name).parts
        if (not isinstance(rec, dict) or not parts or name.startswith("/") or "\\" in name or ".." in parts
                or parts[0] == DEVICE_PACKAGE or name == "manifest.json"):
            # checked here, before anything is sent: the device refuses it too, but only once it arrived
            raise UsageError(f"{folder}/manifest.json names {name!r}, not a file inside the artifact",
                             "rebuild the artifact (dsedge build): its manifest was edited")
        p = folder / name
        if not p.is_file() or p.stat().st_size != rec["bytes"] or file_sha256(p) != rec["sha256"]:
            raise UsageError(f"{p} does not match the artifact's manifest (missing or changed since the build)",
                             "rebuild the artifact (dsedge build) or restore the file")
        out.append(ShipFile(name, p, rec["sha256"], rec["bytes"]))
    m = folder / "manifest.json"
    out.append(ShipFile("manifest.json", m, file_sha256(m), m.stat().st_size))
    pkg = Path(__file__).with_name("device")
    for p in sorted(pkg.glob("*.py")):
        out.append(ShipFile(f"{DEVICE_PACKAGE}/{p.name}", p, file_sha256(p), p.stat().st_size))
    return out

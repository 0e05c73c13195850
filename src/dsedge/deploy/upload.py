"""Resumable, checked upload of a release into releases/.<id>.partial on the device.

Per file: the device reports how many bytes a previous attempt left; only the rest is sent,
appended; then the device hashes every file and compares with the manifest's sha256. A file
that is complete but wrong is deleted there and sent again once."""
from __future__ import annotations

from dataclasses import dataclass, field

from .errors import DeviceError
from .releases import ShipFile
from .remote import DeviceSide

CHUNK = 256 * 1024
SPACE_MARGIN = 64 << 20      # left free on the device's disk after an upload


@dataclass
class UploadStats:
    bytes_sent: int = 0
    per_file: dict = field(default_factory=dict)     # name -> bytes sent this time
    resumed: dict = field(default_factory=dict)      # name -> bytes already on the device
    already_released: bool = False                   # on the device already, every file verified
    repaired: list = field(default_factory=list)     # files of a release on the device that did not match


def _frames(plan, progress, stats):
    import json

    for f, offset in plan:
        n = f.size - offset
        yield (json.dumps({"name": f.name, "offset": offset, "length": n}) + "\n").encode()
        with open(f.path, "rb") as fh:
            fh.seek(offset)
            left = n
            while left:
                block = fh.read(min(CHUNK, left))
                if not block:
                    raise DeviceError(f"{f.path} shrank while uploading", "do not edit the artifact during a flash")
                left -= len(block)
                stats.bytes_sent += len(block)
                stats.per_file[f.name] = stats.per_file.get(f.name, 0) + len(block)
                yield block
                if progress:
                    progress(f.name, f.size - left, f.size)


def upload(dev: DeviceSide, rid: str, files: list[ShipFile], progress=None, stats: UploadStats | None = None) -> UploadStats:
    """progress(name, bytes of it written into the connection, size) after each chunk."""
    stats = stats if stats is not None else UploadStats()
    for attempt in range(2):
        have = dev.call("prepare", rid, payload=_expect(files), what="preparing the upload (verifying what is there)")
        if have["release_exists"]:
            stats.already_released = True
            return stats
        stats.repaired += [n for n in have.get("repaired", []) if n not in stats.repaired]
        plan = []
        for f in files:
            got = have["files"].get(f.name, 0)
            if got > f.size:             # longer than it should be: cannot be a prefix; start over
                got = -1
            if attempt == 0 and got > 0:
                stats.resumed[f.name] = got
            if got != f.size:
                plan.append((f, max(got, 0)))
        if any(off == 0 and have["files"].get(f.name, 0) > f.size for f, off in plan):
            dev.call("verify", rid, payload=_expect([f for f, _ in plan if have["files"].get(f.name, 0) > f.size]))
            continue
        need = sum(f.size - off for f, off in plan)
        free = have.get("free_bytes")
        if free is not None and need + SPACE_MARGIN > free:
            dev.call("abort", rid, what="removing the partial upload")
            raise DeviceError(f"{dev.ssh.address}: the release needs {need / 2**20:.0f} MiB more on the device, "
                              f"its disk has {free / 2**20:.0f} MiB free (and {SPACE_MARGIN >> 20} MiB are kept "
                              "free): nothing was sent, the partial upload was removed",
                              "free space on the device (old releases: dsedge devices status), then flash again")
        if plan:
            r = dev.stream("receive", [rid], _frames(plan, progress, stats))
            if r.returncode != 0:
                raise DeviceError(f"{dev.ssh.address}: upload failed on the device: "
                                  f"{r.stderr.decode(errors='replace').strip()[-1000:]}",
                                  "check the device's disk (df) and flash again: the upload resumes")
        bad = dev.call("verify", rid, payload=_expect(files), what="checking sha256 on the device")["bad"]
        if not bad:
            return stats
    raise DeviceError(f"{dev.ssh.address}: sha256 mismatch on the device after re-sending: {sorted(bad)}",
                      "check the device's storage and the network; flash again")


def _expect(files) -> bytes:
    import json
    return json.dumps({f.name: f.sha256 for f in files}).encode()

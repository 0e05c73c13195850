"""Devices to act on: --device user@host[:port] options and/or an inventory file.

fleet.yaml:
    defaults:            # optional, applied to every device
      root: /home/nvidia/dsedge
      python: python3
    devices:
      - address: nvidia@orin-01         # user@host[:port]
        name: orin-01                    # optional label for the result table
      - address: nvidia@10.0.0.12:2222
        runtime: onnxruntime             # per-device override (auto / tensorrt / onnxruntime)
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import UsageError
from ..safe_yaml import load_yaml
from .ssh import DeviceAddress

DEFAULT_ROOT = "dsedge"        # relative: under the SSH user's home on the device
_KEYS = {"address", "name", "root", "python", "runtime"}
RUNTIMES = ("auto", "tensorrt", "onnxruntime")


@dataclass(frozen=True)
class DeviceTarget:
    address: DeviceAddress
    name: str
    root: str = DEFAULT_ROOT
    python: str = "python3"
    runtime: str | None = None     # None: the command's --runtime


def _entry(d: dict, where: str) -> DeviceTarget:
    bad = set(d) - _KEYS
    if bad:
        raise UsageError(f"{where}: unknown key(s) {sorted(bad)}", f"use only {sorted(_KEYS)}")
    if not isinstance(d.get("address"), str):
        raise UsageError(f"{where}: missing `address` (user@host[:port])", "add address: user@host")
    rt = d.get("runtime")
    if rt is not None and rt not in RUNTIMES:
        raise UsageError(f"{where}: runtime {rt!r} is not one of {RUNTIMES}", "fix the runtime")
    addr = DeviceAddress.parse(d["address"])
    return DeviceTarget(addr, str(d.get("name") or addr), str(d.get("root") or DEFAULT_ROOT),
                        str(d.get("python") or "python3"), rt)


def load_devices(addresses: list[str] | None = None, inventory: Path | None = None,
                 root: str | None = None, python: str | None = None) -> list[DeviceTarget]:
    """--device values plus the inventory's devices; root / python options override defaults."""

    defaults: dict = {}
    entries: list[tuple[dict, str]] = []
    if inventory is not None:
        p = Path(inventory)
        if not p.is_file():
            raise UsageError(f"inventory {p} not found", "pass --inventory with a YAML file (see `dsedge flash --help`)")
        doc = load_yaml(p, "inventory") or {}
        if not isinstance(doc, dict) or not isinstance(doc.get("devices"), list):
            raise UsageError(f"inventory {p} has no `devices:` list", "see the format in `dsedge flash --help`")
        defaults = doc.get("defaults") or {}
        for i, d in enumerate(doc["devices"]):
            if isinstance(d, str):
                d = {"address": d}
            if not isinstance(d, dict):
                raise UsageError(f"{p}: devices[{i}] is not a mapping", "write `- address: user@host`")
            entries.append(({**defaults, **d}, f"{p}: devices[{i}]"))
    for a in addresses or []:
        entries.append(({**defaults, "address": a}, f"--device {a}"))
    out = []
    for d, where in entries:
        if root is not None:
            d["root"] = root
        if python is not None:
            d["python"] = python
        out.append(_entry(d, where))
    if not out:
        raise UsageError("no device given", "pass --device user@host[:port] (repeatable) or --inventory fleet.yaml")
    names = [t.name for t in out]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise UsageError(f"device(s) listed twice: {sorted(dup)}", "list each device once")
    return out

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

or an Ansible inventory, INI or YAML (deploy/ansible.py): every host of it is a device.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import UsageError
from ..safe_yaml import load_yaml
from .ssh import DeviceAddress

DEFAULT_ROOT = "dsedge"        # relative: under the SSH user's home on the device
_KEYS = {"address", "name", "root", "python", "runtime", "identity"}
RUNTIMES = ("auto", "tensorrt", "onnxruntime")


@dataclass(frozen=True)
class DeviceTarget:
    address: DeviceAddress
    name: str
    root: str = DEFAULT_ROOT
    python: str = "python3"
    runtime: str | None = None     # None: the command's --runtime
    identity: str | None = None    # SSH key of this device (Ansible's ansible_ssh_private_key_file)


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
                        str(d.get("python") or "python3"), rt, d.get("identity"))


def _read_inventory(p: Path) -> tuple[dict, list[tuple[dict, str]]]:
    """(defaults, [(entry, where)]) of a dsedge fleet file or an Ansible inventory (INI or YAML)."""
    from ..safe_yaml import MAX_YAML_BYTES
    from .ansible import load_ansible, looks_like_ini, looks_like_yaml_inventory

    if p.stat().st_size > MAX_YAML_BYTES:
        raise UsageError(f"inventory {p} is over {MAX_YAML_BYTES:,} bytes", "keep one fleet per file")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"inventory {p} is not UTF-8 text", "save it as UTF-8") from None
    if looks_like_ini(p, text):
        return {}, load_ansible(p)
    doc = load_yaml(p, "inventory") or {}
    if looks_like_yaml_inventory(doc):
        return {}, load_ansible(p, doc)
    if not isinstance(doc, dict) or not isinstance(doc.get("devices"), list):
        raise UsageError(f"inventory {p} has no `devices:` list and is not an Ansible inventory",
                         "write `devices: [user@host, ...]` (see `dsedge flash --help`) or an Ansible inventory: "
                         "groups (e.g. all:) with hosts:, children:, vars:")
    defaults = doc.get("defaults") or {}
    entries = []
    for i, d in enumerate(doc["devices"]):
        if isinstance(d, str):
            d = {"address": d}
        if not isinstance(d, dict):
            raise UsageError(f"{p}: devices[{i}] is not a mapping", "write `- address: user@host`")
        entries.append(({**defaults, **d}, f"{p}: devices[{i}]"))
    return defaults, entries


def load_devices(addresses: list[str] | None = None, inventory: Path | None = None,
                 root: str | None = None, python: str | None = None) -> list[DeviceTarget]:
    """--device values plus the inventory's devices; root / python options override defaults."""

    defaults: dict = {}
    entries: list[tuple[dict, str]] = []
    if inventory is not None:
        p = Path(inventory)
        if not p.is_file():
            raise UsageError(f"inventory {p} not found",
                             "pass --inventory with a fleet YAML file or an Ansible inventory (see `dsedge flash --help`)")
        defaults, entries = _read_inventory(p)
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

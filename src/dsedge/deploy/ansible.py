"""Ansible inventories (INI and YAML) as dsedge device lists: a fleet already described for
Ansible deploys as it is, one device per host.

Read: groups, `children`, group `vars`, host vars; `ansible_host`, `ansible_user`, `ansible_port`,
`ansible_ssh_private_key_file` (and the old `ansible_ssh_host` / `_user` / `_port` spellings),
`ansible_python_interpreter` as the device's python; `dsedge_root`, `dsedge_python` and
`dsedge_runtime` for dsedge's own per-host settings; host ranges (`orin-[01:12]`, `[a:f]`).
Variables merge as Ansible merges them: groups by depth (`all` first, then children), groups of
one depth by name, host variables last. Other variables are ignored (inventories carry many).
"""
from __future__ import annotations

import re
import shlex
from pathlib import Path

from ..errors import UsageError
from .ssh import DeviceAddress

_GROUP_KEYS = {"hosts", "children", "vars"}
_RANGE = re.compile(r"\[([0-9]+|[a-z]):([0-9]+|[a-z])(?::([0-9]+))?\]")
_SSH_CONNECTIONS = {"ssh", "smart", "paramiko"}
_HOST_ALIASES = {"ansible_host": "ansible_ssh_host", "ansible_user": "ansible_ssh_user",
                 "ansible_port": "ansible_ssh_port"}
FIX = "see the Ansible inventory format (docs.ansible.com, 'How to build your inventory') or `dsedge flash --help`"


class _Inventory:
    def __init__(self, path: Path):
        self.path = path
        self.groups: dict[str, dict] = {}    # name -> {"hosts": [...], "children": [...], "vars": {...}}
        self.hosts: dict[str, dict] = {}     # name -> its own vars
        self.where: dict[str, str] = {}      # host -> where it was first defined (for errors)

    def group(self, name: str) -> dict:
        return self.groups.setdefault(name, {"hosts": [], "children": [], "vars": {}})

    def add_host(self, group: str, name: str, hvars: dict, where: str) -> None:
        for h in expand_range(name, where):
            self.hosts.setdefault(h, {}).update(hvars)
            self.where.setdefault(h, where)
            if h not in self.group(group)["hosts"]:
                self.group(group)["hosts"].append(h)

    def depths(self) -> dict[str, int]:
        """Group -> depth below `all` (Ansible merges shallower groups first); cycles refused."""
        parents = {g: [p for p, d in self.groups.items() if g in d["children"]] for g in self.groups}
        out: dict[str, int] = {}

        def depth(g, seen=()):
            if g in seen:
                raise UsageError(f"{self.path}: groups {' -> '.join([*seen, g])} contain each other",
                                 "remove one of the children: entries")
            if g not in out:
                ps = parents.get(g) or []
                out[g] = 0 if g == "all" else 1 + max((depth(p, (*seen, g)) for p in ps if p != "all"), default=0)
            return out[g]
        for g in self.groups:
            depth(g)
        return out

    def members(self, group: str, seen=()) -> set[str]:
        d = self.groups.get(group) or {"hosts": [], "children": []}
        out = set(d["hosts"])
        for c in d["children"]:
            if c not in seen:
                out |= self.members(c, (*seen, group))
        return out

    def resolved(self) -> list[tuple[str, dict, str]]:
        """(host, merged vars, where) for every host, in the order they were defined."""
        depth = self.depths()
        member = {g: self.members(g) for g in self.groups}
        order = sorted(self.groups, key=lambda g: (depth[g], g))
        out = []
        for h, own in self.hosts.items():
            merged = dict(self.groups["all"]["vars"]) if "all" in self.groups else {}
            for g in order:
                if g != "all" and h in member[g]:
                    merged.update(self.groups[g]["vars"])
            merged.update(own)
            out.append((h, merged, self.where[h]))
        return out


def expand_range(name: str, where: str) -> list[str]:
    """`orin-[01:03]` -> orin-01, orin-02, orin-03 (Ansible's host ranges; one range per name)."""
    m = _RANGE.search(name)
    if not m:
        if "[" in name or "]" in name:
            raise UsageError(f"{where}: host {name!r} has a bracket that is not a range",
                             "write a range as [01:12] or [a:f] (an IPv6 address goes in ansible_host=)")
        return [name]
    a, b, step = m.group(1), m.group(2), int(m.group(3) or 1)
    if a.isdigit() != b.isdigit() or step < 1:
        raise UsageError(f"{where}: host range {m.group(0)} mixes numbers and letters or has a zero step",
                         "write [01:12], [1:12:2] or [a:f]")
    if a.isdigit():
        width = len(a) if a.startswith("0") else 0
        values = [str(i).zfill(width) for i in range(int(a), int(b) + 1, step)]
    else:
        values = [chr(i) for i in range(ord(a), ord(b) + 1, step)]
    if not values:
        raise UsageError(f"{where}: host range {m.group(0)} is empty (start after end)", "swap its ends")
    head, tail = name[:m.start()], name[m.end():]
    return [h for v in values for h in expand_range(head + v + tail, where)]


# ------------------------------------------------------------------------------------ INI
def looks_like_ini(path: Path, text: str) -> bool:
    """Ansible's INI form: a .ini/.cfg file, a suffix-less file (Ansible's `hosts`), or text whose
    first line that says something is a [group] header."""
    if path.suffix.lower() in (".ini", ".cfg", ""):
        return True
    for line in text.splitlines():
        s = line.strip()
        if s and not s.startswith(("#", ";")):
            return re.fullmatch(r"\[[A-Za-z0-9_.:-]+\]", s) is not None
    return False


def _ini_vars(tokens: list[str], where: str) -> dict:
    out = {}
    for t in tokens:
        k, sep, v = t.partition("=")
        if not sep or not k:
            raise UsageError(f"{where}: {t!r} is not key=value", "write host variables as key=value after the host")
        out[k] = v
    return out


def parse_ini(path: Path, text: str) -> _Inventory:
    inv = _Inventory(path)
    inv.group("all")
    inv.group("ungrouped")
    section, kind = "ungrouped", "hosts"
    for n, raw in enumerate(text.splitlines(), 1):
        where = f"{path}:{n}"
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            m = re.fullmatch(r"\[([A-Za-z0-9_.-]+)(?::(vars|children))?\]", line)
            if not m:
                raise UsageError(f"{where}: section header {line!r} is not [group], [group:vars] or "
                                 "[group:children]", "group names take letters, digits, _ . - only")
            section, kind = m.group(1), m.group(2) or "hosts"
            inv.group(section)
            continue
        try:
            tokens = shlex.split(line, comments=True)
        except ValueError as e:
            raise UsageError(f"{where}: cannot split {line!r} ({e})", "close the quote") from None
        if not tokens:
            continue
        if kind == "vars":
            k, sep, v = line.partition("=")
            if not sep or not k.strip():
                raise UsageError(f"{where}: {line!r} in [{section}:vars] is not key=value", "write key=value")
            inv.group(section)["vars"][k.strip()] = shlex.split(v, comments=True)[0] if v.strip() else ""
        elif kind == "children":
            if len(tokens) != 1:
                raise UsageError(f"{where}: [{section}:children] lists one group name per line, got {line!r}",
                                 "put each child group on its own line (its hosts go under [child])")
            inv.group(tokens[0])
            if tokens[0] not in inv.group(section)["children"]:
                inv.group(section)["children"].append(tokens[0])
        else:
            host, hvars = tokens[0], _ini_vars(tokens[1:], where)
            m = re.fullmatch(r"([^:\[\]]+|[^:]*\[[^\]]*\][^:]*):(\d+)", host)   # host:port shorthand
            if m:
                host, hvars = m.group(1), {"ansible_port": m.group(2), **hvars}
            inv.add_host(section, host, hvars, where)
    return inv


# ----------------------------------------------------------------------------------- YAML
def looks_like_yaml_inventory(doc) -> bool:
    """Top-level groups (`all:` ...), each a mapping; parse_yaml names any wrong key inside."""
    return (isinstance(doc, dict) and "devices" not in doc and bool(doc)
            and all(v is None or isinstance(v, dict) for v in doc.values()))


def parse_yaml(path: Path, doc: dict) -> _Inventory:
    inv = _Inventory(path)
    inv.group("all")

    def walk(name: str, body, key: str):
        if body is None:
            body = {}
        if not isinstance(body, dict):
            raise UsageError(f"{path}: {key} is not a mapping", "a group is a mapping with hosts:, children:, vars:")
        bad = set(body) - _GROUP_KEYS
        if bad:
            raise UsageError(f"{path}: {key}: unknown key(s) {sorted(bad)}", "a group takes only hosts:, children: "
                             "and vars: (host variables go under hosts: NAME:)")
        g = inv.group(name)
        for field in ("hosts", "children", "vars"):
            if body.get(field) is not None and not isinstance(body[field], dict):
                raise UsageError(f"{path}: {key}.{field} is not a mapping",
                                 f"write {field}: as NAME: {{...}} entries, not a list")
        g["vars"].update({str(k): v for k, v in (body.get("vars") or {}).items()})
        for h, hvars in (body.get("hosts") or {}).items():
            if hvars is not None and not isinstance(hvars, dict):
                raise UsageError(f"{path}: {key}.hosts.{h} is not a mapping of variables",
                                 f"write `{h}:` alone or `{h}: {{ansible_host: ...}}`")
            inv.add_host(name, str(h), {str(k): v for k, v in (hvars or {}).items()}, f"{path}: {key}.hosts.{h}")
        for c, cbody in (body.get("children") or {}).items():
            if str(c) not in g["children"]:
                g["children"].append(str(c))
            walk(str(c), cbody, f"{key}.children.{c}")

    for name, body in doc.items():
        walk(str(name), body, str(name))
    return inv


# ------------------------------------------------------------------------------- devices
def _get(v: dict, key: str):
    return v.get(key, v.get(_HOST_ALIASES.get(key, ""), None))


def device_entries(inv: _Inventory) -> list[tuple[dict, str]]:
    """(inventory.load_devices entry, where) per host."""
    out = []
    for host, v, where in inv.resolved():
        conn = v.get("ansible_connection")
        if conn is not None and str(conn) not in _SSH_CONNECTIONS:
            raise UsageError(f"{where}: host {host} has ansible_connection={conn}; dsedge reaches devices over "
                             "SSH only", "drop the host from the inventory or set ansible_connection=ssh")
        port = _get(v, "ansible_port")
        try:
            port = 22 if port in (None, "") else int(str(port))
            if not 1 <= port <= 65535:
                raise ValueError
        except ValueError:
            raise UsageError(f"{where}: host {host}: ansible_port={port!r} is not a port number",
                             "give ansible_port a number from 1 to 65535") from None
        address_host = str(_get(v, "ansible_host") or host)
        user = _get(v, "ansible_user")
        text = f"{user + '@' if user else ''}{'[' + address_host + ']' if ':' in address_host else address_host}"
        try:
            addr = DeviceAddress.parse(f"{text}:{port}")
        except UsageError:
            raise UsageError(f"{where}: host {host}: {text!r} is not a usable SSH address",
                             "check ansible_host (a name or IP address) and ansible_user") from None
        entry = {"address": str(addr), "name": host}
        key = _get(v, "ansible_ssh_private_key_file") or v.get("ansible_private_key_file")
        if key:
            entry["identity"] = str(Path(str(key)).expanduser())
        python = v.get("dsedge_python") or v.get("ansible_python_interpreter")
        for k, val in (("root", v.get("dsedge_root")), ("python", python), ("runtime", v.get("dsedge_runtime"))):
            if val is not None:
                entry[k] = str(val)
        out.append((entry, where))
    return out


def load_ansible(path: Path, doc=None) -> list[tuple[dict, str]]:
    """Device entries of the Ansible inventory at `path` (doc: its YAML document, already read)."""
    inv = parse_yaml(path, doc) if doc is not None else parse_ini(path, path.read_text(encoding="utf-8"))
    entries = device_entries(inv)
    if not entries:
        raise UsageError(f"inventory {path} lists no hosts", "add hosts to a group (" + FIX + ")")
    return entries

"""Every YAML file dsedge reads (dsedge.yaml, targets, calibration recipes, device inventories),
read one way: bounded in size, anchors and aliases refused (a "billion laughs" document grows
without bound when its aliases are expanded: 4.3 GB after 95 s was measured through PyYAML's
safe_load), errors naming the file and the fix."""
from __future__ import annotations

from pathlib import Path

from .errors import UsageError

MAX_YAML_BYTES = 1 << 20     # dsedge's own files are a few KB


def load_yaml(path: Path, what: str, error=UsageError, max_bytes: int = MAX_YAML_BYTES):
    """The document in `path` (None when empty). error: the DsedgeError subclass to raise."""
    import yaml

    class _NoAliases(yaml.SafeLoader):
        def compose_node(self, parent, index):
            if self.check_event(yaml.AliasEvent):
                event = self.peek_event()
                raise error(f"{what} {path}: YAML alias *{event.anchor} (line {event.start_mark.line + 1}) "
                            "is not accepted", "write the value out instead of referring to an anchor")
            return super().compose_node(parent, index)

    path = Path(path)
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise error(f"{what} {path} is {size:,} bytes, over the {max_bytes:,}-byte limit for a YAML file",
                        "keep the file small (it holds settings, not data)")
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise error(f"{what} {path} is not UTF-8 text", "save the file as UTF-8") from None
    except OSError as e:
        raise error(f"cannot read {what} {path} ({e.strerror})", "check the path and its permissions") from None
    try:
        return yaml.load(text, Loader=_NoAliases)   # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as e:
        raise error(f"{what} {path} is not valid YAML ({e})", "fix the file's syntax") from None

"""`dsedge flash`, `dsedge devices`, `dsedge bench`: commands on dsedge.cli.app (parsing and rendering only)."""
from __future__ import annotations

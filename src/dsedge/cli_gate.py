"""`dsedge gate` and `dsedge report`: commands on dsedge.cli.app (parsing and rendering only)."""
from __future__ import annotations

"""Load: checkpoint folders and hub ids, safetensors headers (architecture knowledge: dsedge.archs)."""
from .checkpoint import Checkpoint, file_sha256, open_checkpoint

__all__ = ["Checkpoint", "file_sha256", "open_checkpoint"]

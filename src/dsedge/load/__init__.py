"""Load: checkpoint folders and hub ids, safetensors headers, the architecture table."""
from .archs import ARCHITECTURES, ArchSpec, arch_spec
from .checkpoint import Checkpoint, file_sha256, open_checkpoint

__all__ = ["ARCHITECTURES", "ArchSpec", "arch_spec", "Checkpoint", "file_sha256", "open_checkpoint"]

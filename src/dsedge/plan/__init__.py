"""Plan: memory estimates from config.json and safetensors headers alone (no weights read)."""
from .host import HostPlan, available_memory_bytes, plan_host

__all__ = ["HostPlan", "available_memory_bytes", "plan_host"]

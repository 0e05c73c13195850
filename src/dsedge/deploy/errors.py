"""Errors of flash / rollback / bench. Each names the problem and the fix (dsedge.errors)."""
from __future__ import annotations

from ..errors import DsedgeError, UsageError


class DeviceError(DsedgeError):
    """Something failed on the device (upload, engine build, smoke test): exit 1."""


class ConnectionLost(DeviceError):
    """SSH could not connect, or the connection dropped."""


class HostKeyError(UsageError):
    """The device's host key is unknown or does not match known_hosts (never trusted blindly)."""


class EngineMismatch(UsageError):
    """A prebuilt engine for another TensorRT version or GPU than the device's."""


class SmokeTestFailed(DeviceError):
    pass

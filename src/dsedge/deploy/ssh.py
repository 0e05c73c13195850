"""SSH transport: the system OpenSSH client through subprocess, with argument lists (no local
shell).

Why OpenSSH rather than paramiko: it is on every host and CI machine already (no new
dependency); it honours the user's ~/.ssh/config (ProxyJump, agents, certificates, per-host
keys), which fleets of Jetsons behind bastions rely on; and host-key verification is its own,
well-audited code (StrictHostKeyChecking=yes), not something we reimplement.

Every remote command is one string that the remote login shell parses: each argument is passed
through shlex.quote, so no argument can inject shell syntax.
"""
from __future__ import annotations

import re
import shlex
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ConnectionLost, HostKeyError, UsageError

_ADDR = re.compile(r"^(?:(?P<user>[A-Za-z0-9._-]+)@)?(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)(?::(?P<port>\d{1,5}))?$")
_FP = re.compile(r"SHA256:[A-Za-z0-9+/=]+")


@dataclass(frozen=True)
class DeviceAddress:
    host: str
    user: str | None = None
    port: int = 22

    @classmethod
    def parse(cls, text: str) -> "DeviceAddress":
        m = _ADDR.match(text.strip())
        if not m or not (1 <= int(m.group("port") or 22) <= 65535):
            raise UsageError(f"bad device address {text!r}", "write it as user@host or user@host:port")
        host = m.group("host").strip("[]")
        return cls(host, m.group("user"), int(m.group("port") or 22))

    def __str__(self) -> str:
        h = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.user + '@' if self.user else ''}{h}{':' + str(self.port) if self.port != 22 else ''}"

    @property
    def known_hosts_name(self) -> str:
        """How known_hosts names this host (OpenSSH writes [host]:port for non-22 ports)."""
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"


@dataclass
class SshOptions:
    known_hosts: Path | None = None      # None: OpenSSH's defaults (~/.ssh/known_hosts + the global file)
    identity: Path | None = None
    accept_new_host_key: bool = False    # trust on first use: record unknown keys, still refuse changed ones
    connect_timeout: int = 10
    ssh: str = "ssh"
    extra: list[str] = field(default_factory=list)


class Ssh:
    """One device. run() executes a command there; stream() feeds it stdin from an iterator."""

    def __init__(self, address: DeviceAddress, options: SshOptions | None = None):
        self.address, self.options = address, options or SshOptions()

    def base_args(self) -> list[str]:
        o = self.options
        args = [o.ssh, "-p", str(self.address.port),
                "-o", "BatchMode=yes",                      # never prompt (parallel, non-interactive)
                "-o", f"StrictHostKeyChecking={'accept-new' if o.accept_new_host_key else 'yes'}",
                "-o", f"ConnectTimeout={o.connect_timeout}",
                "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3",   # notice a dropped link in ~15 s
                "-o", "LogLevel=ERROR"]
        if o.known_hosts:
            args += ["-o", f"UserKnownHostsFile={o.known_hosts}", "-o", "GlobalKnownHostsFile=/dev/null"]
        if o.identity:
            args += ["-i", str(o.identity), "-o", "IdentitiesOnly=yes"]
        if self.address.user:
            args += ["-l", self.address.user]
        return args + list(o.extra) + ["--", self.address.host]

    def command(self, argv: list[str]) -> list[str]:
        return self.base_args() + [" ".join(shlex.quote(a) for a in argv)]

    def _check(self, rc: int, stderr: str) -> None:
        if rc != 255:
            return
        if "REMOTE HOST IDENTIFICATION HAS CHANGED" in stderr or "Host key verification failed" in stderr:
            raise host_key_error(self, stderr)
        raise ConnectionLost(f"{self.address}: SSH failed: {_last_lines(stderr)}",
                             "check the address, the network and that your key is authorized on the device "
                             "(ssh-copy-id); rerun: a flash resumes where it stopped")

    def run(self, argv: list[str], stdin: bytes = b"", timeout: float | None = 600) -> subprocess.CompletedProcess:
        try:
            r = subprocess.run(self.command(argv), input=stdin, capture_output=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise ConnectionLost(f"{self.address}: no answer in {timeout:.0f} s", "check the device; rerun") from None
        except FileNotFoundError:
            raise UsageError(f"the OpenSSH client ({self.options.ssh}) is not installed here",
                             "install openssh-client") from None
        self._check(r.returncode, r.stderr.decode(errors="replace"))
        return r

    def stream(self, argv: list[str], chunks, on_chunk=None) -> subprocess.CompletedProcess:
        """Run argv with stdin fed from `chunks` (bytes); on_chunk(n) after each write. The
        remote process sees EOF (and keeps what it wrote) if this side fails or is killed."""
        proc = subprocess.Popen(self.command(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        try:
            try:
                for block in chunks:
                    proc.stdin.write(block)
                    if on_chunk:
                        on_chunk(len(block))
                proc.stdin.close()
            except BrokenPipeError:
                pass                                  # the connection dropped: rc 255 below says so
            proc.stdin = None                         # closed: communicate() must not flush it
            out, err = proc.communicate(timeout=600)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        r = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
        self._check(r.returncode, err.decode(errors="replace"))
        return r


def _last_lines(text: str, n: int = 3) -> str:
    return " / ".join(l.strip() for l in text.strip().splitlines()[-n:]) or "(no message)"


def host_key_error(ssh: Ssh, stderr: str) -> HostKeyError:
    a, kh = ssh.address, ssh.options.known_hosts or Path("~/.ssh/known_hosts")
    fp = _FP.search(stderr)
    if "REMOTE HOST IDENTIFICATION HAS CHANGED" in stderr:
        return HostKeyError(
            f"{a}: the host key presented ({fp.group(0) if fp else 'fingerprint not shown'}) does not match "
            f"the one recorded in {kh} for {a.known_hosts_name}: refused (a reinstalled device, or someone "
            "in the middle)",
            f"confirm the new fingerprint on the device's console (ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub), "
            f"then `ssh-keygen -R {shlex.quote(a.known_hosts_name)} -f {kh}` and flash again with "
            "--accept-new-host-key")
    return HostKeyError(
        f"{a}: host key not in {kh} for {a.known_hosts_name}: refused (no blind trust)",
        f"verify the fingerprint shown by `ssh-keyscan -p {a.port} {a.host} | ssh-keygen -lf -` against the "
        "device's console, then connect once with `ssh`, or pass --accept-new-host-key (trust on first use)")

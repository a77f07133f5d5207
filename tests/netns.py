"""A throw-away network namespace with its own hosts file: how test daemons resolve names.

`ip netns exec NAME cmd` runs `cmd` in the namespace and bind-mounts /etc/netns/NAME/hosts
and /etc/netns/NAME/resolv.conf over the machine's, so Kamailio (getaddrinfo for advertised
names, Path/Service-Route hosts, cdp peers) resolves our FQDNs without touching the host.
Only loopback exists inside: every 127.0.0.x address is usable and nothing collides with
other engineers' daemons on the host.

Name resolution lives here only; switching to a CoreDNS serving the rendered zone means
writing `resolv.conf` (nameserver) instead of `hosts`.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the vm tier's guest imports this module without the product's dependencies
    from components.settings import Settings

NETNS_ETC = Path("/etc/netns")
NETNS_RUN = Path("/run/netns")
_CLONE_NEWNET = 0x40000000


def hosts_for(settings: Settings, fallback_prefix: str = "127.0.1.") -> dict[str, str]:
    """FQDN -> address of every NF; NFs without a fixed address get 127.0.1.N."""
    hosts = {}
    for n, nf in enumerate(settings.nfs.values(), start=1):
        hosts[nf.fqdn] = nf.address or f"{fallback_prefix}{n}"
    return hosts


class NetNamespace:
    def __init__(self, name: str, hosts: Mapping[str, str], nameserver: str | None = None):
        self.name = name
        self.hosts = dict(hosts)
        self.nameserver = nameserver

    @property
    def etc(self) -> Path:
        return NETNS_ETC / self.name

    def create(self) -> NetNamespace:
        subprocess.run(["ip", "netns", "add", self.name], check=True, capture_output=True, text=True)
        subprocess.run(["ip", "-n", self.name, "link", "set", "lo", "up"], check=True, capture_output=True, text=True)
        self.etc.mkdir(parents=True, exist_ok=True)
        lines = ["127.0.0.1 localhost"] + [f"{address} {name}" for name, address in sorted(self.hosts.items())]
        (self.etc / "hosts").write_text("\n".join(lines) + "\n", encoding="utf-8")
        resolv = f"nameserver {self.nameserver}\n" if self.nameserver else "# hosts file only\noptions attempts:1 timeout:1\n"
        (self.etc / "resolv.conf").write_text(resolv, encoding="utf-8")
        return self

    def destroy(self) -> None:
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True, text=True)
        shutil.rmtree(self.etc, ignore_errors=True)

    def prefix(self) -> list[str]:
        """Command prefix that runs a program inside the namespace."""
        return ["ip", "netns", "exec", self.name]

    def run(self, argv: list[str], **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run(self.prefix() + list(argv), **kwargs)

    @contextmanager
    def entered(self) -> Iterator[None]:
        """Run Python code of this thread inside the namespace (sockets created here stay in it).

        Threads started inside inherit the namespace, so an in-process test double can listen
        on the namespace's loopback.
        """
        libc = ctypes.CDLL(None, use_errno=True)
        own = os.open(f"/proc/self/task/{threading.get_native_id()}/ns/net", os.O_RDONLY)
        target = os.open(NETNS_RUN / self.name, os.O_RDONLY)
        try:
            if libc.setns(target, _CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), f"setns into {self.name}")
            try:
                yield
            finally:
                if libc.setns(own, _CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), "setns back to the host namespace")
        finally:
            os.close(own)
            os.close(target)


def can_create_namespaces() -> str | None:
    """None if this process can create network namespaces, else why not."""
    if os.geteuid() != 0:
        return "network namespaces need root (ip netns add)"
    if shutil.which("ip") is None:
        return "iproute2 (ip) is not installed"
    return None

"""Valkey (IMS database) configuration: AOF persistence, a memory ceiling, password from a secret file.

valkey.conf goes into a ConfigMap and only `include`s the password file, which lives in a
Kubernetes Secret. The same files run under valkey-server 8.1 (the image's minor) in the live
tests.
"""

from __future__ import annotations

import re

from ..interfaces import VALKEY_PORT
from ..settings import Settings

SECRET_DIR = "/etc/valkey/secret"
AUTH_FILE = "auth.conf"
PASSWORD_FILE = "password"

_UNITS = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


def quantity_bytes(quantity: str) -> int:
    """Bytes of a Kubernetes memory quantity such as 256Mi or 1G (settings validated the form)."""
    match = re.fullmatch(r"([0-9]+)([A-Za-z]*)", quantity)
    if not match or match.group(2) not in _UNITS:
        raise ValueError(f"not a memory quantity: {quantity!r}")
    return int(match.group(1)) * _UNITS[match.group(2)]


def maxmemory(settings: Settings) -> int:
    """Half the pod's memory limit: an AOF rewrite forks, and its copy-on-write pages count against
    the same limit. Above the ceiling writes fail with an OOM error instead of the pod being killed."""
    resources = settings.nf("valkey").resources
    assert resources is not None
    return quantity_bytes(resources.memory) // 2


def render(
    settings: Settings,
    *,
    bind: str = "0.0.0.0",
    port: int = VALKEY_PORT,
    data_dir: str = "/data",
    secret_dir: str = SECRET_DIR,
) -> dict[str, str]:
    """valkey.conf; the password stays in the secret file it includes."""
    databases = max(settings.valkey_databases.values()) + 1
    return {
        "valkey.conf": "\n".join(
            [
                "# Rendered by ims-core. Clients (one logical database each):",
                *(
                    f"#   db {db}: {client}"
                    for client, db in sorted(settings.valkey_databases.items(), key=lambda kv: kv[1])
                ),
                f"bind {bind}",
                f"port {port}",
                # A password is always set (settings require it); the NetworkPolicy limits who connects.
                "protected-mode no",
                f"databases {max(databases, 16)}",
                f"dir {data_dir}",
                # Every write reaches the append-only file within a second; a restart replays it.
                "appendonly yes",
                'appenddirname "appendonlydir"',
                "appendfsync everysec",
                "aof-use-rdb-preamble yes",
                "save 3600 1 300 100 60 10000",
                # Registration state must never be evicted silently: refuse writes when full.
                f"maxmemory {maxmemory(settings)}",
                "maxmemory-policy noeviction",
                'logfile ""',
                "loglevel notice",
                f"include {secret_dir}/{AUTH_FILE}",
                "",
            ]
        )
    }


def render_secrets(password: str) -> dict[str, str]:
    """Files for the Kubernetes Secret: the `requirepass` include and the bare password (for probes)."""
    return {AUTH_FILE: f"requirepass {password}\n", PASSWORD_FILE: password}

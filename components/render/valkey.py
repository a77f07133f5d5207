"""Valkey (IMS database) configuration: persistence with AOF, password from a secret file."""

from __future__ import annotations

from ..settings import Settings

VALKEY_PORT = 6379
SECRET_DIR = "/etc/valkey/secret"


def render(
    settings: Settings, *, bind: str = "0.0.0.0", data_dir: str = "/data", secret_dir: str = SECRET_DIR
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
                f"port {VALKEY_PORT}",
                "protected-mode no",
                f"databases {max(databases, 16)}",
                f"dir {data_dir}",
                # Every write reaches the append-only file within a second; restarts replay it.
                "appendonly yes",
                "appendfsync everysec",
                "aof-use-rdb-preamble yes",
                "save 3600 1 300 100 60 10000",
                f"include {secret_dir}/auth.conf",
                "",
            ]
        )
    }


def render_secrets(password: str) -> dict[str, str]:
    return {"auth.conf": f"requirepass {password}\n", "password": password}

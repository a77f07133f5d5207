"""Live Valkey: valkey-server 8.1 runs the rendered valkey.conf and password file; state survives restarts.

The state written is the I-CSCF's: the product's seed of the `s_cscf`, `s_cscf_capabilities` and
`nds_trusted_domains` rows (`render_kamailio.icscf_seed`: a hash per row keyed `<table>:entry::<id>`,
as db_redis stores them), checked against the schemas in config/kamailio/db_redis/, in the
I-CSCF's own logical database. Kamailio itself does not read them back here: that belongs with
the Kamailio live tests.
"""

from __future__ import annotations

import signal
import uuid
from pathlib import Path

import pytest

from components.render import kamailio as render_kamailio
from components.render import valkey as render_valkey
from tests import debian_root
from tests.figures import record
from tests.netns import NetNamespace, can_create_namespaces
from tests.profiles import TEST_VALKEY_PASSWORD, loopback_settings
from tests.tooling import ROOT, missing
from tests.valkey_daemon import Valkey

SCHEMAS = ROOT / "config" / "kamailio" / "db_redis"


def icscf_rows(settings) -> dict[str, dict[str, str]]:
    """The product's I-CSCF seed (what the I-CSCF reads from Valkey), checked against the db_redis schemas."""
    rows = render_kamailio.icscf_seed(settings)
    for key, row in rows.items():
        table = key.split(":", 1)[0]
        columns = [c.split("/")[0] for c in (SCHEMAS / table).read_text().splitlines()[0].split(",")]
        assert set(columns) == set(row), f"{key}: seed columns {sorted(row)} differ from the schema's {columns}"
    return rows


@pytest.fixture
def valkey(tmp_path: Path):
    debian_root.require()
    why = can_create_namespaces()
    if why:
        missing("a network namespace", why)
    netns = NetNamespace(f"valkey-{uuid.uuid4().hex[:8]}", hosts={}).create()
    server = Valkey(loopback_settings(), TEST_VALKEY_PASSWORD, tmp_path, netns=netns)
    server.render()
    try:
        yield server.start()
    finally:
        server.stop()
        netns.destroy()


def write_rows(server: Valkey, db: int, rows: dict[str, dict[str, str]]) -> None:
    for key, row in rows.items():
        fields = [item for pair in row.items() for item in pair]
        server.cli("HSET", key, *fields, db=db)


def read_rows(server: Valkey, db: int, keys) -> dict[str, dict[str, str]]:
    rows = {}
    for key in keys:
        flat = server.value("HGETALL", key, db=db).splitlines()
        rows[key] = dict(zip(flat[::2], flat[1::2], strict=True))
    return rows


@pytest.mark.parametrize("how", ["crash (SIGKILL)", "clean shutdown (SIGTERM)"])
def test_icscf_tables_survive_a_restart(valkey, how):
    settings = valkey.settings
    db = settings.valkey_databases["icscf"]
    rows = icscf_rows(settings)
    write_rows(valkey, db, rows)
    assert "aof_enabled:1" in valkey.value("INFO", "persistence")
    # Nothing but the append-only file can bring them back: no RDB snapshot was taken.
    assert not (valkey.data_dir / "dump.rdb").exists()

    valkey.stop(signal.SIGKILL if how.startswith("crash") else signal.SIGTERM)
    valkey.start()

    assert read_rows(valkey, db, rows) == rows
    # Replayed from the AOF's incremental file (the base file was empty when the rows were written).
    assert "DB loaded from incr file" in valkey.log()
    record(f"live: Valkey ({how}) answered PING {valkey.startup_seconds * 1000:.0f} ms after restart")


def test_each_client_keeps_to_its_own_database(valkey):
    databases = valkey.settings.valkey_databases
    write_rows(valkey, databases["icscf"], icscf_rows(valkey.settings))
    for client, db in databases.items():
        if client != "icscf":
            assert valkey.value("DBSIZE", db=db) == "0", client
    assert valkey.value("DBSIZE", db=databases["icscf"]) == "3"


def test_the_rendered_password_is_required(valkey):
    assert "NOAUTH" in valkey.cli("PING", password="", check=False).stdout
    wrong = valkey.cli("PING", password="not-the-password-at-all", check=False)
    assert "WRONGPASS" in wrong.stdout + wrong.stderr
    assert valkey.value("PING") == "PONG"


def test_rendered_limits_are_in_effect(valkey):
    assert valkey.value("CONFIG", "GET", "maxmemory").splitlines()[1] == str(render_valkey.maxmemory(valkey.settings))
    assert valkey.value("CONFIG", "GET", "maxmemory-policy").splitlines()[1] == "noeviction"
    assert valkey.value("CONFIG", "GET", "appendfsync").splitlines()[1] == "everysec"
    assert valkey.value("CONFIG", "GET", "bind").splitlines()[1] == valkey.address

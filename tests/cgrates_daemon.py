"""cgr-engine on the rendered cgrates.json, with its StorDB (PostgreSQL) and the plan loader.

What runs is the product's: `components.render.cgrates.cgrates_json` (only the listen address,
the Valkey and StorDB hosts and the dictionaries path point at the test's places), the StorDB
schema the product ships (config/cgrates/postgres, run once on an empty database as the pod's
init does), and config/cgrates/load_plan.py, the loader Job's script, loading `plan_json`.

cgr-engine is the one `scripts/bootstrap-tools.sh cgrates` builds from the Go module at the
pinned version, beside the Diameter dictionaries of that version. PostgreSQL 17 (the major of
`cgratesStorDbImage`) runs from the Debian 13 root (tests/debian_root.py), as its postgres user.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from components.render import cgrates as render_cgrates
from components.settings import Settings
from tests import debian_root
from tests.netns import NetNamespace
from tests.tooling import TOOLS_DIR, missing, require_binary

PG_BIN = "/usr/lib/postgresql/17/bin"
STORDB_PASSWORD = "loopback-stordb-password"
STARTUP_TIMEOUT = 20.0


def dictionaries_dir() -> Path:
    path = TOOLS_DIR / "share" / "cgrates" / "diameter" / "dict"
    if not path.is_dir():
        missing(f"the CGRateS Diameter dictionaries ({path})", "go")
    return path


@dataclass
class Process:
    name: str
    argv: list[str]
    log: Path
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen | None = None

    def start(self, ns: NetNamespace) -> Process:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                ns.prefix() + self.argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env={**os.environ, **self.env}, start_new_session=True,
            )
        return self

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
        if self.proc is None:
            return
        if self.alive():
            try:
                os.killpg(self.proc.pid, sig)
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout)
            except ProcessLookupError:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def tail(self, lines: int = 150) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"


def _wait(predicate, timeout: float, what: str, process: Process) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not process.alive():
            raise RuntimeError(f"{process.name} exited while waiting for {what}:\n{process.tail()}")
        if predicate():
            return
        time.sleep(0.2)
    raise TimeoutError(f"{what} not within {timeout}s:\n{process.tail()}")


@dataclass
class StorDb:
    """PostgreSQL for the StorDB: its own cluster in a fresh directory under /tmp (pytest's
    are private to root, and PostgreSQL runs as user postgres), removed on stop."""

    address: str
    ns: NetNamespace
    directory: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="ims-stordb-")))
    process: Process | None = None

    def _postgres_ids(self) -> tuple[int, int]:
        """uid and gid of the root's postgres user (PostgreSQL refuses to run as root)."""
        for line in (debian_root.DEBIAN_ROOT / "etc" / "passwd").read_text().splitlines():
            fields = line.split(":")
            if fields[0] == "postgres":
                return int(fields[2]), int(fields[3])
        missing("PostgreSQL in the Debian 13 root (postgresql-17)", debian_root.HOW_TO_GET)
        raise AssertionError("unreachable")

    def start(self) -> StorDb:
        """initdb, start, create the database and the schema; on any failure, stop() cleans up."""
        debian_root.require()
        if not debian_root.has(f"{PG_BIN}/postgres"):
            missing("PostgreSQL in the Debian 13 root (postgresql-17)", debian_root.HOW_TO_GET)
        uid, gid = self._postgres_ids()
        user = f"{uid}:{gid}"
        data = self.directory / "data"
        os.chown(self.directory, uid, gid)
        pwfile = self.directory / "pw"
        pwfile.write_text(STORDB_PASSWORD + "\n")
        os.chown(pwfile, uid, gid)
        subprocess.run(
            debian_root.command([f"{PG_BIN}/initdb", "-D", str(data), "-U", render_cgrates.STORDB_USER,
                                 "--auth=scram-sha-256", f"--pwfile={pwfile}", "-E", "UTF8"], user=user),
            check=True, capture_output=True,
        )
        # The process exists before anything can fail: stop() then always finds it.
        self.process = Process(
            "postgres (StorDB)",
            debian_root.command([f"{PG_BIN}/postgres", "-D", str(data), "-k", str(self.directory),
                                 "-c", f"listen_addresses={self.address}", "-p", str(render_cgrates.STORDB_PORT)],
                                user=user),
            self.directory / "postgres.log",
        ).start(self.ns)
        _wait(lambda: self.psql("SELECT 1", db="postgres").returncode == 0, STARTUP_TIMEOUT, "PostgreSQL", self.process)
        self.psql(f"CREATE DATABASE {render_cgrates.STORDB_NAME}", db="postgres", check=True)
        # The schema the product ships, once, on the empty database (the pod's init does the same).
        for sql in render_cgrates.stordb_schema().values():
            self.psql(sql, check=True)
        return self

    def psql(self, sql: str, db: str = render_cgrates.STORDB_NAME, check: bool = False) -> subprocess.CompletedProcess:
        argv = ["psql", "-v", "ON_ERROR_STOP=1", "-qAt", "-h", self.address, "-p", str(render_cgrates.STORDB_PORT),
                "-U", render_cgrates.STORDB_USER, "-d", db, "-f", "-"]
        result = subprocess.run(self.ns.prefix() + debian_root.command(argv), input=sql, text=True, capture_output=True,
                                env={**os.environ, "PGPASSWORD": STORDB_PASSWORD})
        if check and result.returncode != 0:
            raise RuntimeError(f"psql failed: {result.stderr}")
        return result

    def stop(self) -> None:
        if self.process:
            # SIGINT: PostgreSQL's fast shutdown.
            self.process.stop(signal.SIGINT)
        shutil.rmtree(self.directory, ignore_errors=True)


@dataclass
class Cgrates:
    """cgr-engine on the rendered config; `api` calls its JSON-RPC API like the loader does."""

    settings: Settings
    directory: Path
    ns: NetNamespace
    valkey_password: str
    stordb_address: str
    process: Process | None = None

    @property
    def address(self) -> str:
        address = self.settings.nf("cgrates").address
        assert address, "the loopback profile gives CGRateS a fixed address"
        return address

    @property
    def api_url(self) -> str:
        return f"http://{self.address}:{render_cgrates.API_PORT}/jsonrpc"

    def render(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / "cgrates.json").write_text(render_cgrates.cgrates_json(
            self.settings, listen_address=self.address, valkey_host=self.settings.nf("valkey").address,
            stordb_host=self.stordb_address, dictionaries_path=str(dictionaries_dir()) + "/",
        ))
        (self.directory / "plan.json").write_text(render_cgrates.plan_json(self.settings))

    def start(self) -> Cgrates:
        binary = require_binary("cgr-engine", "go")
        self.render()
        self.process = Process(
            "cgr-engine",
            [binary, "-config_path", str(self.directory), "-logger", "*stdout"],
            self.directory / "cgr-engine.log",
            env={render_cgrates.VALKEY_PASSWORD_ENV: self.valkey_password,
                 render_cgrates.STORDB_PASSWORD_ENV: STORDB_PASSWORD},
        ).start(self.ns)
        _wait(self._pong, STARTUP_TIMEOUT, "cgr-engine API", self.process)
        return self

    def _pong(self) -> bool:
        try:
            return self.api("APIerSv1.Ping", {}) == "Pong"
        except (OSError, RuntimeError, ValueError):
            return False

    def api(self, method: str, params: dict):
        """One JSON-RPC call from inside the namespace (config/cgrates/load_plan.py's `call`)."""
        code = (
            "import json,sys; sys.path.insert(0, sys.argv[1]); import load_plan; "
            "print(json.dumps(load_plan.call(sys.argv[2], sys.argv[3], json.loads(sys.argv[4]))))"
        )
        result = subprocess.run(
            self.ns.prefix() + [sys.executable, "-c", code, str(render_cgrates.SHIPPED), self.api_url, method,
                                json.dumps(params)],
            capture_output=True, text=True, timeout=30,
        )
        if result.returncode != 0:
            raise RuntimeError(f"{method}: {result.stderr.strip().splitlines()[-1] if result.stderr else result.returncode}")
        return json.loads(result.stdout)

    def load_plan(self) -> subprocess.CompletedProcess:
        """Run the loader Job's script, as the Job does, against this engine."""
        return subprocess.run(
            self.ns.prefix() + [sys.executable, str(render_cgrates.LOADER_SCRIPT), str(self.directory / "plan.json"),
                                self.api_url, "--wait", "20"],
            capture_output=True, text=True, timeout=120,
        )

    def balance(self, account: str) -> float:
        """The account's *monetary balance total, as CGRateS reports it."""
        acc = self.api("APIerSv2.GetAccount", {"Tenant": render_cgrates.tenant(self.settings), "Account": account})
        return sum(b["Value"] for b in (acc.get("BalanceMap") or {}).get("*monetary", []))

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process:
            self.process.stop(sig)

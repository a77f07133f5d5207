"""MariaDB for the Valkey-against-MariaDB benchmark: Debian 13's mariadb-server and Kamailio's
db_mysql, from the layer scripts/debian13-mariadb-layer.sh puts over the Debian 13 root.

The P-CSCF variant here is not shipped: it is the shipped P-CSCF config with db_redis
swapped for db_mysql and the location table in MariaDB (Kamailio's own
ims_usrloc_pcscf-create.sql, under the table name the shipped config saves to), everything
else unchanged, so the two runs differ only in the database behind the write-through.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from tests import debian_root
from tests.netns import NetNamespace
from tests.tooling import missing

LAYER = debian_root.DEBIAN_ROOT.with_name(debian_root.DEBIAN_ROOT.name + "-mariadb")
ADDRESS, PORT = "127.0.0.31", 3306
USER, PASSWORD, DATABASE = "kamailio", "bench-mariadb-password", "kamailio"
SQL_DIR = "/usr/share/kamailio/mysql"


def require() -> None:
    if not (LAYER / "upper" / "usr" / "sbin" / "mariadbd").exists():
        missing(f"the MariaDB layer ({LAYER})", "run: bash scripts/debian13-mariadb-layer.sh (as root)")


def command(argv: list[str]) -> list[str]:
    """`argv` run from the Debian 13 root with the MariaDB layer over it (read-only overlay)."""
    require()
    root = debian_root.require()
    mount = 'mount -t overlay overlay -o "lowerdir=$1/upper:$2" "$1/merged" && layer=$1 && shift 2 && exec sh "$@"'
    inner = [str(debian_root.WRAPPER), str(LAYER / "merged"), "", *argv]
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", mount, "sh", str(LAYER), str(root), *inner]


class MariaDb:
    """mariadbd on Debian's defaults, its data directory under `workdir`."""

    def __init__(self, ns: NetNamespace, workdir: Path):
        self.ns, self.dir = ns, workdir
        self.process: subprocess.Popen | None = None
        self.startup_seconds = 0.0

    @property
    def socket(self) -> str:
        return str(self.dir / "mysqld.sock")

    @property
    def url(self) -> str:
        return f"mysql://{USER}:{PASSWORD}@{ADDRESS}:{PORT}/{DATABASE}"

    def sql(self, statements: str) -> str:
        argv = command(["mariadb", f"--socket={self.socket}", "-uroot", "-N", "-B"])
        result = subprocess.run(self.ns.prefix() + argv, input=statements, capture_output=True, text=True, timeout=60)
        if result.returncode != 0:
            raise RuntimeError(f"mariadb: {result.stderr}")
        return result.stdout

    def start(self) -> MariaDb:
        shutil.rmtree(self.dir, ignore_errors=True)
        (self.dir / "data").mkdir(parents=True)
        init = command(["mariadb-install-db", "--user=root", f"--datadir={self.dir / 'data'}", "--skip-test-db",
                        "--auth-root-authentication-method=socket"])
        done = subprocess.run(self.ns.prefix() + init, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"mariadb-install-db: {done.stdout[-2000:]}{done.stderr[-2000:]}")
        argv = command([
            "mariadbd", "--user=root", f"--datadir={self.dir / 'data'}", f"--socket={self.socket}",
            f"--bind-address={ADDRESS}", f"--port={PORT}", f"--pid-file={self.dir / 'mysqld.pid'}", "--skip-name-resolve",
        ])
        started = time.monotonic()
        with open(self.dir / "mariadbd.log", "wb") as log:
            self.process = subprocess.Popen(
                self.ns.prefix() + argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        while time.monotonic() - started < 60:
            if self.process.poll() is not None:
                raise RuntimeError(f"mariadbd exited:\n{(self.dir / 'mariadbd.log').read_text()[-3000:]}")
            try:
                self.sql("SELECT 1;")
                break
            except RuntimeError:
                time.sleep(0.1)
        self.startup_seconds = time.monotonic() - started
        self._schema()
        return self

    def _schema(self) -> None:
        root = LAYER / "upper" / SQL_DIR.lstrip("/")
        tables = (root / "standard-create.sql").read_text() + (root / "ims_usrloc_pcscf-create.sql").read_text()
        self.sql(
            f"CREATE DATABASE {DATABASE};\nCREATE USER '{USER}'@'%' IDENTIFIED BY '{PASSWORD}';\n"
            f"GRANT ALL ON {DATABASE}.* TO '{USER}'@'%';\nUSE {DATABASE};\n"
            + tables.replace("pcscf_location", "location")
        )

    def version(self) -> str:
        return self.sql("SELECT VERSION();").strip().split("-")[0]

    def contacts(self) -> int:
        return int(self.sql(f"SELECT COUNT(*) FROM {DATABASE}.location;").strip() or 0)

    def stop(self) -> None:
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)


def pcscf_on_mariadb(files: dict[str, str], url: str) -> dict[str, str]:
    """The rendered P-CSCF files with the location write-through on db_mysql."""
    cfg = files["kamailio.cfg"].replace('loadmodule "db_redis"', 'loadmodule "db_mysql"')
    cfg = "\n".join(line for line in cfg.splitlines() if not line.startswith('modparam("db_redis"')) + "\n"
    assert 'loadmodule "db_mysql"' in cfg, "the shipped P-CSCF config no longer loads db_redis"
    return {**files, "kamailio.cfg": cfg, "secrets.cfg": f'#!define VALKEY_URL "{url}"\n'}

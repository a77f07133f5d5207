"""valkey-server 8.1 (the Debian 13 root, the minor the Valkey image ships) running the rendered
valkey.conf and password file.

The files are the product's (components/render/valkey.py); only bind address, data directory
and secret directory point at the test's own places. Commands go through valkey-cli with the
password in the environment, as the pod's readiness probe and init containers do.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from components.render import valkey as render_valkey
from components.settings import Settings
from tests import debian_root
from tests.netns import NetNamespace

STARTUP_TIMEOUT = 10.0


@dataclass
class Valkey:
    settings: Settings
    password: str
    directory: Path
    netns: NetNamespace | None = None
    process: subprocess.Popen | None = None
    startup_seconds: float = 0.0

    @property
    def address(self) -> str:
        address = self.settings.nf("valkey").address
        assert address, "the loopback profile gives Valkey a fixed address"
        return address

    @property
    def data_dir(self) -> Path:
        return self.directory / "data"

    @property
    def conf(self) -> Path:
        return self.directory / "valkey.conf"

    @property
    def log_path(self) -> Path:
        return self.directory / "valkey.log"

    def render(self) -> None:
        secret_dir = self.directory / "secret"
        for path in (self.data_dir, secret_dir):
            path.mkdir(parents=True, exist_ok=True)
        files = render_valkey.render(
            self.settings, bind=self.address, data_dir=str(self.data_dir), secret_dir=str(secret_dir)
        )
        self.conf.write_text(files["valkey.conf"], encoding="utf-8")
        for name, text in render_valkey.render_secrets(self.password).items():
            path = secret_dir / name
            path.write_text(text, encoding="utf-8")
            path.chmod(0o400)

    def _prefix(self) -> list[str]:
        return self.netns.prefix() if self.netns else []

    def start(self) -> Valkey:
        argv = self._prefix() + debian_root.command(["valkey-server", str(self.conf)])
        started = time.monotonic()
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        deadline = started + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"valkey-server exited with {self.process.returncode}:\n{self.log()}")
            reply = self.cli("PING", check=False)
            if reply.returncode == 0 and reply.stdout.strip() == "PONG":
                self.startup_seconds = time.monotonic() - started
                return self
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"valkey-server did not answer PING after {STARTUP_TIMEOUT}s:\n{self.log()}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stops this server by its PID: SIGTERM shuts down cleanly, SIGKILL is a crash."""
        if self.process is None or self.process.poll() is not None:
            return
        # `ip netns exec`, unshare, sh and chroot all exec: the PID is valkey-server's own.
        os.kill(self.process.pid, sig)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path.exists() else ""

    def cli(
        self, *args: str, db: int = 0, password: str | None = None, check: bool = True, stdin: str | None = None
    ) -> subprocess.CompletedProcess:
        """valkey-cli against this server; `password` overrides the rendered one ("" for none)."""
        env = {k: v for k, v in os.environ.items() if k not in ("REDISCLI_AUTH", "VALKEYCLI_AUTH")}
        auth = self.password if password is None else password
        if auth:
            env["REDISCLI_AUTH"] = auth  # valkey-cli 8.1 reads only this name (VALKEYCLI_AUTH is newer)
        argv = self._prefix() + debian_root.command(
            ["valkey-cli", "-h", self.address, "-p", str(render_valkey.VALKEY_PORT), "-n", str(db), *args]
        )
        result = subprocess.run(argv, env=env, input=stdin, capture_output=True, text=True, timeout=10)
        if check and (result.returncode != 0 or result.stdout.startswith(("ERR", "NOAUTH", "WRONGPASS"))):
            raise RuntimeError(f"valkey-cli {' '.join(args)}: {result.stdout}{result.stderr}")
        return result

    def value(self, *args: str, db: int = 0) -> str:
        return self.cli(*args, db=db).stdout.strip()

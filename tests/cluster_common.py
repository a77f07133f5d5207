"""What the engine and node tiers share: REST calls to their API server, and a Pulumi workspace
(a copy of the project, a file backend, the real CLI) bound to a stack of the real program.

The engine tier's cluster is kwokctl's (tests/engine/cluster.py), the node tier's a real kubelet
beside a control plane of its own (tests/node/node.py); both keep their PKI in `<workdir>/pki`
with an admin client certificate, which is all this module assumes of them.
"""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.tooling import ROOT, TOOLS_DIR

# What `pulumi` needs of the project to run the program.
PROJECT_FILES = ("Pulumi.yaml", "__main__.py", "components", "config", "dockerfiles")
PASSPHRASE = "engine-tier-passphrase"


# --- talking to the apiserver -----------------------------------------------------------------


def api_client(pki: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    context.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
    return context


def api_request(
    server: str,
    context: ssl.SSLContext,
    method: str,
    path: str,
    body: dict | None = None,
    timeout: float = 10.0,
    content_type: str = "application/json",
) -> tuple[int, str]:
    """One REST call; returns (status, body text) and never raises on HTTP errors."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(server + path, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(request, context=context, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


# --- a Pulumi workspace ------------------------------------------------------------------------


def copy_project(target: Path, source: Path = ROOT, names=PROJECT_FILES) -> Path:
    """The program's files in `target`, with the test run's virtualenv."""
    target.mkdir(parents=True, exist_ok=True)
    for name in names:
        path = source / name
        if path.is_dir():
            shutil.copytree(path, target / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif path.exists():
            shutil.copy2(path, target / name)
    (target / ".venv").symlink_to(ROOT / ".venv")
    return target


def pulumi_env(base: Path, passphrase: str = PASSPHRASE) -> dict[str, str]:
    """The CLI's environment: a file backend and a home under `base`, none of the caller's
    PULUMI_* or KUBECONFIG, the pinned tools first on PATH."""
    (base / "state").mkdir(parents=True, exist_ok=True)
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("PULUMI_", "KUBECONFIG"))},
        "PATH": f"{TOOLS_DIR / 'bin'}:{ROOT / '.venv' / 'bin'}:{os.environ.get('PATH', '')}",
        "PULUMI_HOME": str(base / "home"),
        # The language host built from Go modules is older than Pulumi.yaml's runtime options
        # and ignores `virtualenv`: name the project's interpreter explicitly.
        "PULUMI_PYTHON_CMD": str(ROOT / ".venv" / "bin" / "python"),
        "PULUMI_BACKEND_URL": f"file://{base / 'state'}",
        "PULUMI_CONFIG_PASSPHRASE": passphrase,
        "PULUMI_SKIP_UPDATE_CHECK": "true",
        "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
        "PULUMI_SKIP_CONFIRMATIONS": "true",
    }


@dataclass
class Workspace:
    """One project copy + stack, and the pulumi CLI bound to it; `cluster` has `server` and
    `workdir` (its PKI under workdir/pki)."""

    project: Path
    stack: str
    env: dict[str, str]
    cluster: Any
    timings: dict[str, float] = field(default_factory=dict)

    @classmethod
    def create(
        cls, base: Path, stack: str, cluster: Any, config: dict[str, str], source: Path = ROOT, **extra
    ) -> Workspace:
        """A copy of the project in `source` under `base`, stack `stack` made in a file backend
        there and configured with `config`."""
        project = copy_project(base / "ims-core", source)
        ws = cls(project=project, stack=stack, env=pulumi_env(base), cluster=cluster, **extra)
        subprocess.run(
            ["pulumi", "stack", "init", stack, "--non-interactive"],
            cwd=project,
            env=ws.env,
            check=True,
            capture_output=True,
        )
        for key, value in config.items():
            ws.pulumi("config", "set", key, value)
        return ws

    def pulumi(self, *args: str, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess:
        result = subprocess.run(
            ["pulumi", *args, "--stack", self.stack, "--non-interactive"],
            cwd=self.project,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"pulumi {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
            )
        return result

    def use_program(self, source: Path) -> None:
        """Swap the program for the one in `source` (another version of the project)."""
        for name in PROJECT_FILES:
            path = self.project / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
        (self.project / ".venv").unlink()
        copy_project(self.project, source)

    def timed(self, label: str, *args: str, **kwargs) -> subprocess.CompletedProcess:
        start = time.perf_counter()
        result = self.pulumi(*args, **kwargs)
        self.timings[label] = time.perf_counter() - start
        return result

    def preview_steps(self) -> list[dict]:
        result = self.pulumi("preview", "--json", "--diff")
        return json.loads(result.stdout).get("steps", [])

    def api(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        context = api_client(self.cluster.workdir / "pki")
        status, text = api_request(self.cluster.server, context, method, path, body)
        return status, (json.loads(text) if text.strip().startswith("{") else {"raw": text})

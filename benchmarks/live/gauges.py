"""Each CSCF's shared memory and transactions during a load step, read over its control
socket (kamcmd core.shmmem, stats.get_statistics): what runs out first under overload."""

from __future__ import annotations

import re
import subprocess
import threading
from dataclasses import dataclass, field

from tests import debian_root

ROLES = ("pcscf", "icscf", "scscf")


@dataclass
class RoleGauges:
    shm_total: int = 0
    shm_free_min: int | None = None
    shm_used_max: int = 0
    active_max: int = 0
    current_max: int = 0
    samples: int = 0
    errors: list[str] = field(default_factory=list)

    def mb(self, value: int | None) -> str:
        return "-" if value is None else f"{value / 2**20:.1f}"


class CscfGauges:
    """Peaks of each CSCF's shm use and tm transactions, sampled every `interval` seconds
    (one chroot per sample, every CSCF asked in it)."""

    def __init__(self, core, interval: float = 0.5):
        self.core, self.interval = core, interval
        self.roles = {role: RoleGauges() for role in ROLES}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-gauges", daemon=True)
        script = []
        for role in ROLES:
            sock = f"unix:{core.workdir / role / 'kamailio_ctl'}"
            script.append(f"echo '@{role}'; kamcmd -s {sock} core.shmmem; kamcmd -s {sock} stats.get_statistics tmx:")
        self.argv = debian_root.command(["sh", "-c", "; ".join(script)])

    def sample(self) -> None:
        try:
            out = subprocess.run(self.argv, capture_output=True, text=True, timeout=5).stdout
        except subprocess.TimeoutExpired:
            return
        for chunk in out.split("@")[1:]:
            role, _, text = chunk.partition("\n")
            gauges = self.roles.get(role.strip())
            if gauges is None:
                continue
            values = {k: int(v) for k, v in re.findall(r"(\w+)\s*[:=]\s*(\d+)", text)}
            if "free" not in values:
                continue  # the CSCF did not answer (restarting, or wedged)
            gauges.samples += 1
            gauges.shm_total = values.get("total", gauges.shm_total)
            gauges.shm_free_min = min(values["free"], gauges.shm_free_min if gauges.shm_free_min is not None else values["free"])
            gauges.shm_used_max = max(gauges.shm_used_max, values.get("real_used", 0))
            gauges.active_max = max(gauges.active_max, values.get("active_transactions", 0))
            gauges.current_max = max(gauges.current_max, values.get("inuse_transactions", 0))

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.sample()

    def line(self) -> str:
        parts = []
        for role, g in self.roles.items():
            if not g.samples:
                parts.append(f"{role} no answer")
                continue
            parts.append(
                f"{role} shm used {g.mb(g.shm_used_max)}/{g.mb(g.shm_total)} MB (free min {g.mb(g.shm_free_min)}), "
                f"transactions {g.current_max} ({g.active_max} pending)"
            )
        return "   peaks: " + "; ".join(parts)

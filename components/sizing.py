"""Kamailio sizing and the P-CSCF's overload control, read from stack settings.

Worker counts and memory pools used to be fixed in the configs; the defaults in Pulumi.yaml
come from the figures in benchmarks/README.md (2-core machine, full IMS-AKA registrations).
Validated here, with every problem named by its key, and reported together with the rest of
the stack config by `components.settings`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

CSCF_ROLES = ("pcscf", "icscf", "scscf")
MAX_WORKERS = 64
MIN_SHM_MB, MIN_PKG_MB = 16, 4
# Kamailio processes besides the SIP workers: main, timers, ctl, cdp (receiver, timer and its
# Diameter workers), module timers. Counted generously: pkg memory is per process.
OTHER_PROCESSES = 12
# Private memory a Kamailio process touches (benchmarks/core_figures.py: a whole CSCF of ~20
# processes stays under 30 MB PSS, shm in use included, at its knee), doubled: the pkg pool is
# a ceiling per process, not what it uses.
PRIVATE_MB_TOUCHED = 2
# UDP sockets each role listens on (the P-CSCF has Gm and Mw); each gets `workers` processes,
# and the TCP side another `workers`.
UDP_SOCKETS = {"pcscf": 2, "icscf": 1, "scscf": 1}

# What fills a CSCF's shared pool under registration load (benchmarks/README.md, "Where the
# shared memory goes"): tm transactions, about 16-27 KB each with the request cloned, its
# answer and the branch state, held until tm's wait timer (5 s) ends after the final answer.
# A full IMS-AKA registration is two REGISTER transactions at each CSCF, and the P-CSCF
# admits at most pcscfOverloadRegisterRate of them per second, so each pool must hold
#   SHM_BASE_MB + 2 x rate x SHM_HOLD_SECONDS x SHM_KB_PER_TRANSACTION.
# Measured: an idle S-CSCF with 1000 registered users uses 12-17 MB; with about 200
# registrations/s admitted it held 1950-2520 transactions and 44-61 MB (its 64 MB ran out at
# 300/s offered, when the P-CSCF's rate gauge did not count).
SHM_BASE_MB = 16
SHM_KB_PER_TRANSACTION = 24
# tm's wait timer plus the registration's own time through the core under load.
SHM_HOLD_SECONDS = 7
TRANSACTIONS_PER_REGISTRATION = 2
# Each CSCF sheds new work (503 + Retry-After) once less than this share of its pool is free,
# and a REGISTER answering a challenge once less than half of it is: the pool must never run
# out, since the IMS modules do not survive a failed allocation (the S-CSCF died).
SHM_SHED_FREE_PERCENT = 20
_UNITS = {"": 1 / 2**20, "Ki": 1 / 1024, "Mi": 1, "Gi": 1024, "Ti": 2**20, "k": 1e3 / 2**20, "M": 1e6 / 2**20, "G": 1e9 / 2**20, "T": 1e12 / 2**20}


@dataclass(frozen=True)
class KamailioSizing:
    """One CSCF's worker count and memory pools (`kamailio -m SHM -M PKG`, in MB)."""

    workers: int
    shm_mb: int
    pkg_mb: int

    def processes(self, role: str) -> int:
        return self.workers * (UDP_SOCKETS[role] + 1) + OTHER_PROCESSES

    def shed_free_bytes(self) -> int:
        """Free shared memory below which the CSCF sheds new work (overload.cfg)."""
        return self.shm_mb * 2**20 * SHM_SHED_FREE_PERCENT // 100

    def args(self) -> list[str]:
        """Kamailio command-line options for the memory pools."""
        return ["-m", str(self.shm_mb), "-M", str(self.pkg_mb)]


@dataclass(frozen=True)
class Overload:
    """P-CSCF overload control (config/kamailio/pcscf/route/overload.cfg)."""

    register_rate: int
    pending_limit: int
    retry_after: int


def memory_mb(quantity: str) -> float | None:
    """A Kubernetes memory quantity in MiB, or None if it is not one."""
    match = re.fullmatch(r"([1-9][0-9]*)(Ki|Mi|Gi|Ti|k|M|G|T)?", quantity or "")
    if not match:
        return None
    return int(match.group(1)) * _UNITS[match.group(2) or ""]


def _int_in(key: str, value: Any, low: int, high: int, errors: list[str]) -> int:
    if not isinstance(value, int):
        return low  # the type error is already reported
    if not low <= value <= high:
        errors.append(f"{key} = {value}: must be between {low} and {high}")
    return value


def shm_needed_mb(register_rate: int) -> int:
    """The shared pool a CSCF needs for the registrations the P-CSCF admits per second, with
    SHM_SHED_FREE_PERCENT of it still free (so admitted work is never shed by the pool)."""
    transactions = TRANSACTIONS_PER_REGISTRATION * register_rate * SHM_HOLD_SECONDS
    used = SHM_BASE_MB + transactions * SHM_KB_PER_TRANSACTION / 1024
    return int(-(-used * 100 // (100 - SHM_SHED_FREE_PERCENT)))


def kamailio_sizing(v: Mapping[str, Any], errors: list[str]) -> dict[str, KamailioSizing]:
    """Per role: workers, shm and pkg pools, checked against the pod's memory limit and
    against the registrations per second the P-CSCF admits."""
    sizing = {}
    rate = v.get("pcscfOverloadRegisterRate")
    needed = shm_needed_mb(rate) if isinstance(rate, int) and rate > 0 else None
    for role in CSCF_ROLES:
        workers = _int_in(f"{role}Workers", v[f"{role}Workers"], 1, MAX_WORKERS, errors)
        shm = _int_in(f"{role}ShmMb", v[f"{role}ShmMb"], MIN_SHM_MB, 65536, errors)
        pkg = _int_in(f"{role}PkgMb", v[f"{role}PkgMb"], MIN_PKG_MB, 1024, errors)
        size = KamailioSizing(workers=workers, shm_mb=shm, pkg_mb=pkg)
        limit = memory_mb(v.get(f"{role}Memory") or "")
        need = shm + min(pkg, PRIVATE_MB_TOUCHED) * size.processes(role)
        if limit is not None and need > limit:
            errors.append(
                f"{role}ShmMb = {shm}, {role}Workers = {workers}: the shared pool plus the private memory of "
                f"{size.processes(role)} processes comes to {need} MiB, more than {role}Memory = "
                f"{v.get(f'{role}Memory')!r}; raise {role}Memory or lower {role}ShmMb or {role}Workers"
            )
        if needed is not None and MIN_SHM_MB <= shm < needed:
            errors.append(
                f"{role}ShmMb = {shm}: too small for pcscfOverloadRegisterRate = {rate}; the {role} holds about "
                f"{TRANSACTIONS_PER_REGISTRATION * rate * SHM_HOLD_SECONDS} transactions of ~{SHM_KB_PER_TRANSACTION} KB "
                f"at that rate and sheds new work below {SHM_SHED_FREE_PERCENT} % free, so it needs at least "
                f"{needed} MB; raise {role}ShmMb (and {role}Memory) or lower pcscfOverloadRegisterRate"
            )
        sizing[role] = size
    return sizing


def overload(v: Mapping[str, Any], errors: list[str]) -> Overload:
    return Overload(
        register_rate=_int_in("pcscfOverloadRegisterRate", v["pcscfOverloadRegisterRate"], 1, 100000, errors),
        pending_limit=_int_in("pcscfOverloadPendingLimit", v["pcscfOverloadPendingLimit"], 10, 100000, errors),
        retry_after=_int_in("pcscfOverloadRetryAfter", v["pcscfOverloadRetryAfter"], 1, 3600, errors),
    )

"""Live figures of the signalling plane: registrations per second through P-, I- and S-CSCF
with IMS-AKA, overload control past the knee, footprint and start-up of each daemon, call
set-up latency, and the P-CSCF's location write-through on Valkey against MariaDB.

Run by benchmarks/core_figures.py under pytest with the live tier's fixtures
(tests/live/conftest.py): the same namespace, CoreDNS, Valkey, rtpengine, Rx PCRF double
and Kamailio roles on the shipped configs rendered for the loopback profile. The HSS and PCRF
fixtures are replaced: the same doubles, each in a process of its own
(benchmarks/live/double_process.py), the Cx double also knowing the benchmark's subscribers.
Prints tables; asserts nothing about speed.
"""

from __future__ import annotations

import os
import re
import threading
import time

import pytest

from benchmarks.live import load, mariadb, procs
from benchmarks.live.double_process import DoubleProcess
from benchmarks.live.gauges import CscfGauges
from components.render import kamailio as render_kamailio
from components.settings import CSCF_ROLES
from tests.doubles.cx_hss import CxHssTestDouble, Subscriber
from tests.doubles.milenage import Milenage
from tests.doubles.rx_pcrf import RxPcrfTestDouble
from tests.profiles import TEST_VALKEY_PASSWORD, loopback_settings

UES = int(os.environ.get("IMS_BENCH_UES", "1000"))
SECONDS = int(os.environ.get("IMS_BENCH_SECONDS", "8"))
RATES = [int(r) for r in os.environ.get("IMS_BENCH_RATES", "100,200,300").split(",")]
OVERLOAD_FACTOR = 5
# Other pcscfOverloadPendingLimit values at 5x the knee, to size it (local runs).
LIMIT_SWEEP = [int(v) for v in os.environ.get("IMS_BENCH_LIMITS", "").split(",") if v]
# Other P-CSCF stack settings than the defaults for the whole run, to size them, e.g.
# IMS_BENCH_PCSCF=pcscfWorkers=8,pcscfOverloadRegisterRate=150
PCSCF = {
    key: int(value)
    for key, _, value in (item.partition("=") for item in os.environ.get("IMS_BENCH_PCSCF", "").split(",") if item)
}
# The knee: the highest offered rate that still completes this share, without failures.
KNEE_SHARE = 0.95


@pytest.fixture(scope="session")
def hss(live_settings, netns, users):
    """The live tier's Cx double with the live users plus the benchmark's UEs."""
    nf = live_settings.nf("hss")
    domain = live_settings.ims_domain
    subscribers = [
        Subscriber(impi=u.impi, k=u.k.encode(), op=u.op.encode(), amf=u.amf.encode(), impus=[u.impu])
        for u in (users.alice, users.bob, users.carol, users.dave)
    ] + [
        Subscriber(
            impi=f"{ue.name}@{domain}", k=load.BENCH_K.encode(), op=load.BENCH_OP.encode(),
            amf=load.BENCH_AMF.encode(), impus=[f"sip:{ue.name}@{domain}"],
        )
        for ue in load.bench_ues(UES)
    ]
    # SIPp hashes the AKA RES as a C string: skip RANDs whose RES has a zero byte for any key.
    milenages = {(s.k, s.op): s.milenage for s in subscribers}.values()

    def rand() -> bytes:
        while True:
            candidate = os.urandom(16)
            if all(0 not in m.f2345(candidate)[0] for m in milenages):
                return candidate

    assert all(isinstance(m, Milenage) for m in milenages)

    def factory() -> CxHssTestDouble:
        return CxHssTestDouble(
            subscribers, origin_host=nf.fqdn, origin_realm=nf.realm, bind_address=nf.address,
            port=render_kamailio.DIAMETER_PORT, mandatory_capabilities=[0], rand_source=rand,
        )

    double = DoubleProcess(factory, netns).start()
    yield double
    errors = double.errors
    double.stop()
    assert not errors, f"the Cx HSS double failed: {errors[:5]}"


@pytest.fixture(scope="session")
def pcrf(live_settings, netns):
    """The live tier's Rx PCRF double, in a process of its own (accepts every AAR)."""
    nf = live_settings.nf("pcrf")

    def factory() -> RxPcrfTestDouble:
        return RxPcrfTestDouble(
            origin_host=nf.fqdn, origin_realm=nf.realm, bind_address=nf.address, port=render_kamailio.DIAMETER_PORT
        )

    double = DoubleProcess(factory, netns).start()
    yield double
    errors = double.errors
    double.stop()
    assert not errors, f"the Rx PCRF double failed: {errors[:5]}"


def _groups(core) -> dict[str, int]:
    groups = {f"kamailio {role}": d.pid for role, d in core.kamailio.items()}
    groups["valkey"] = core.valkey.server.process.pid
    groups["rtpengine"] = core.rtpengine.process.pid
    coredns = procs.in_namespace("coredns", core.ns.name)
    if coredns is not None:
        groups["coredns"] = coredns
    groups["Cx HSS double"] = core.hss.pid
    groups["Rx PCRF double"] = core.pcrf.pid
    return groups


def _footprint(core) -> dict[str, float]:
    return {name: procs.pss_mb(procs.tree_pids(pgid)) for name, pgid in _groups(core).items()}


class PeakPss:
    """Largest PSS of each daemon while a load step runs (sampled every second)."""

    def __init__(self, core):
        self.core, self.peak, self._stop = core, {}, threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-pss", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            for name, mb in _footprint(self.core).items():
                self.peak[name] = max(self.peak.get(name, 0.0), mb)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def _step(core, workdir, rate: int, meter_groups=None):
    ues = load.bench_ues(UES)
    target = _target(core)
    meter = procs.CpuMeter(meter_groups or _groups(core), {})
    before = _log_events(core)
    meter.start()
    with PeakPss(core) as peak, CscfGauges(core) as gauges:
        result = load.run_step(core.ns, workdir, target, ues, core.settings.ims_domain, rate, SECONDS)
    result.gauges = gauges
    # The machine is shared: its load says how much of the two cores the core had.
    result.load_average = os.getloadavg()[0]
    spent, _ = meter.stop()
    after = _log_events(core)
    result.events.update(
        {key: after.get(key, 0) - before.get(key, 0) for key in after if after.get(key, 0) > before.get(key, 0)}
    )
    spent["SIPp"] = result.sipp_cpu_seconds
    # Percent of one core over the step's length (the offered load's duration).
    cpu = {name: 100 * seconds / SECONDS for name, seconds in spent.items()}
    result.cpu_seconds = spent
    core.hss.clear_requests()
    if core.pcrf is not None:
        core.pcrf.clear_requests()
    return result, cpu, peak.peak


HEADER = "offered  done/s  p50 ms  p99 ms   shed failed retrans | CPU % of one core: "


def _cpu_per_registration(result) -> None:
    """CPU milliseconds per completed registration at the knee, and what they add up to."""
    per = {name: 1000 * seconds / max(result.completed, 1) for name, seconds in result.cpu_seconds.items()}
    print("CPU ms per registration at the knee: " + "  ".join(f"{n.replace('kamailio ', '')} {v:.2f}" for n, v in per.items()))
    core_ms = sum(v for n, v in per.items() if n.startswith("kamailio") or n in ("valkey", "coredns"))
    print(
        f"the signalling plane (3 Kamailio, Valkey, the IMS DNS) spends {core_ms:.2f} ms of CPU per registration: "
        f"about {2000 / core_ms:.0f}/s on 2 cores it had to itself (an estimate, not a measurement)"
    )


# What the CSCFs log when they run out of room or time: counted per load step.
LOG_EVENTS = {
    "shm exhausted": "could not allocate shared memory",
    "Diameter answer > 500 ms": "outside of threshold",
    "answer after its transaction ended": "active transaction not found",
}


def _log_events(core) -> dict[str, int]:
    counts: dict[str, int] = {}
    for role, daemon in core.kamailio.items():
        try:
            text = daemon.log.read_text(errors="replace")
        except FileNotFoundError:
            continue
        for name, needle in LOG_EVENTS.items():
            counts[f"{role}: {name}"] = counts.get(f"{role}: {name}", 0) + text.count(needle)
    return counts


def _events_line(result) -> str:
    events = getattr(result, "events", {})
    lines = [result.gauges.line()] if getattr(result, "gauges", None) else []
    if getattr(result, "load_average", None) is not None:
        lines.append(f"   machine load average (1 min) at the step's end: {result.load_average:.1f} on {os.cpu_count()} cores")
    if events:
        lines.append("   logged: " + ", ".join(f"{k} x{v}" for k, v in sorted(events.items())))
    return "\n".join(lines)


def _target(core) -> str:
    return f"{core.settings.nf('pcscf').address}:{render_kamailio.SIP_PORT}"


def _cpu_line(cpu: dict[str, float]) -> str:
    # "?" where a process of the daemon ended during the step (its CPU went with it).
    return "  ".join(
        f"{name.replace('kamailio ', '')} {value:.0f}" if value >= 0 else f"{name.replace('kamailio ', '')} ?"
        for name, value in cpu.items()
    )


def _keep_log(core, role: str, tag: str) -> None:
    """Keep a CSCF's log before it is restarted (a restart truncates it): what it logged
    during a storm is the reason for the figures."""
    log = core.kamailio[role].log
    if log.exists():
        log.rename(log.with_name(f"kamailio-{role}.{tag}.log"))


# The P-CSCF's rate and pending gauges out of reach, for the step that shows what they
# prevent. Set in the rendered defines, not as stack settings: the settings refuse a rate
# the CSCFs' pools cannot hold, which is the point of this step. Every CSCF's memory
# gauge stays on.
GAUGES_OFF = {"OVERLOAD_REGISTER_RATE": 100000, "OVERLOAD_PENDING_LIMIT": 100000}


def _restart_pcscf(core, defines: dict[str, int] | None = None, **overrides) -> None:
    """Re-render the P-CSCF's config with stack-config `overrides` (and `defines` replaced in
    the rendered defines.cfg) and restart it."""
    overrides = {**PCSCF, **overrides}
    settings = loopback_settings(stack="live", pcscfIpsec=False, pcscfRx=True, **overrides)
    config_dir = core.workdir / "pcscf"
    files = render_kamailio.render(settings, "pcscf", config_dir=str(config_dir), bind_address=True)
    files.update(render_kamailio.render_secrets(settings, "pcscf", TEST_VALKEY_PASSWORD))
    for name, value in (defines or {}).items():
        files["defines.cfg"], count = re.subn(rf"(?m)^#!define {name} \d+$", f"#!define {name} {value}", files["defines.cfg"])
        assert count == 1, f"{name} is not in the rendered defines"
        overrides[name] = value
    for rel, text in files.items():
        (config_dir / rel).write_text(text, encoding="utf-8")
    core.kamailio["pcscf"].stop()
    _keep_log(core, "pcscf", f"before-{'-'.join(f'{k}={v}' for k, v in overrides.items()) or 'defaults'}")
    started = time.monotonic()
    core.start_cscf("pcscf")
    contacts = int(core.valkey.cli("pcscf", "DBSIZE").strip() or 0)
    print(f"   (P-CSCF restarted with {overrides or 'the defaults'}: {contacts} contacts preloaded from Valkey, "
          f"answering after {time.monotonic() - started:.1f} s)")


def _recover(core) -> None:
    """Every CSCF restarted after the uncontrolled storm: it can leave a CSCF without its
    Diameter peer or out of shared memory, and the next benchmarks need a sound core."""
    peers = {role: _cx_peer_lost(core, role) for role in ("icscf", "scscf")}
    for role in ("scscf", "icscf"):
        core.kamailio[role].stop()
        _keep_log(core, role, "storm")
        core.start_cscf(role)
    _restart_pcscf(core)
    lost = [role for role, gone in peers.items() if gone]
    if lost:
        print(f"   (after the storm {' and '.join(lost)} had lost its Cx peer: restarted)")


def _cx_peer_lost(core, role: str) -> bool:
    """Whether the CSCF's last Diameter send found no connected peer (cdp's own words)."""
    tail = core.kamailio[role].tail(200)
    return "No connected DefaultRoute peer" in tail


def _startup(core) -> dict[str, float]:
    times = {}
    for role in CSCF_ROLES:
        core.kamailio[role].stop()
        started = time.monotonic()
        core.start_cscf(role)
        times[f"kamailio {role}"] = time.monotonic() - started
    core.valkey.server.stop()
    core.valkey.server.start()
    times["valkey"] = core.valkey.server.startup_seconds
    return times


def bench_registrations(core, workdir):
    settings = core.settings
    print("\n== registrations: full IMS-AKA (UAR, MAR, UAR, SAR; Rx AAR at the P-CSCF) through P-, I-, S-CSCF")
    print(
        f"   {UES} UEs on {UES} addresses, {SECONDS} s per step, pike {_pike()} requests/2 s per address, "
        f"overload control: {settings.overload.register_rate} first REGISTERs/s, "
        f"{settings.overload.pending_limit} pending transactions, "
        f"workers {settings.kamailio['pcscf'].workers}/{settings.kamailio['icscf'].workers}/"
        f"{settings.kamailio['scscf'].workers} (P/I/S)"
    )
    startup = _startup(core)
    if PCSCF:
        _restart_pcscf(core)
    idle = _footprint(core)
    # Every UE registers once first: the sweep then measures re-registrations (SAR
    # RE_REGISTRATION), what a core at its knee mostly serves.
    first = load.run_step(core.ns, workdir / "initial", _target(core), load.bench_ues(UES), settings.ims_domain, 50, -(-UES // 50))
    print(f"initial registration of the {UES} UEs at 50/s: {first.completed} completed, {first.failed} failed, {first.shed} shed")
    print(HEADER)
    knee, knee_rate, load_pss = 0.0, 0, {}
    for rate in RATES:
        result, cpu, peak = _step(core, workdir / "sweep", rate)
        print(load.summary(result), "|", _cpu_line(cpu), flush=True)
        if _events_line(result):
            print(_events_line(result))
        if result.failed == 0 and result.completed_per_s >= KNEE_SHARE * rate:
            knee, knee_rate, load_pss, knee_result = result.completed_per_s, rate, peak, result
    if knee_rate == 0:
        print("no rate completed without failures: no knee, no overload step")
        return
    over = knee_rate * OVERLOAD_FACTOR
    print(f"knee: {knee:.0f} registrations/s completed at {knee_rate}/s offered")
    _cpu_per_registration(knee_result)
    print(f"\n== overload: {OVERLOAD_FACTOR}x the knee ({over}/s offered)")
    print(HEADER)
    result, cpu, _ = _step(core, workdir / "overload", over)
    print(load.summary(result), "|", _cpu_line(cpu), flush=True)
    if _events_line(result):
        print(_events_line(result))
    share = 100 * result.completed_per_s / knee
    print(f"with overload control: {result.completed_per_s:.0f}/s completed = {share:.0f} % of the knee (goal >= 90 %)")
    _pending_bound(result, settings.overload.pending_limit, settings.overload.register_rate, settings.kamailio["pcscf"].workers)
    for limit in LIMIT_SWEEP:
        _restart_pcscf(core, pcscfOverloadPendingLimit=limit)
        result, cpu, _ = _step(core, workdir / f"overload-{limit}", over)
        print(load.summary(result), "|", _cpu_line(cpu), flush=True)
        if _events_line(result):
            print(_events_line(result))
        print(f"limit {limit}: {result.completed_per_s:.0f}/s completed = {100 * result.completed_per_s / knee:.0f} % of the knee")
        _pending_bound(result, limit, settings.overload.register_rate, settings.kamailio["pcscf"].workers)
    # Last: the storm without overload control leaves the CSCFs' state disturbed.
    _restart_pcscf(core, defines=GAUGES_OFF)
    result, cpu, _ = _step(core, workdir / "overload-off", over)
    print(load.summary(result), "|", _cpu_line(cpu), flush=True)
    if _events_line(result):
        print(_events_line(result))
    print(
        f"without the P-CSCF's rate and pending gauges (memory gauges on): {result.completed_per_s:.0f}/s completed = "
        f"{100 * result.completed_per_s / knee:.0f} % of the knee"
    )
    _recover(core)

    print("\n== footprint: PSS in MB (idle after start-up / peak at the knee) and start-up until it answers")
    for name in (n for n in idle if "double" not in n):
        up = startup.get(name)
        up_text = "-" if up is None else f"{up:.2f} s"
        print(f"   {name:<18} {idle[name]:7.1f} / {load_pss.get(name, 0.0):7.1f}   start-up {up_text}")


def _pending_bound(result, limit: int, rate: int, workers: int) -> None:
    """The P-CSCF's pending transactions against the limit and the bound the gauges allow.
    New attempts stop at the limit and challenge answers at 4x it, as the workers see the
    count; tmx refreshes it in each worker at most every 2 s, so up to 2 s of admitted first
    REGISTERs (the exact rate gauge caps them) and as many answers come on top, plus one
    request per UDP worker between the check and its transaction."""
    peak = result.gauges.roles["pcscf"].active_max
    stale = 2 * 2 * rate
    bound = 4 * limit + stale + 2 * workers
    print(
        f"   P-CSCF pending transactions: peak {peak} (sampled every 0.5 s) against the limit {limit}; "
        f"bound {bound} = 4 x {limit} for challenge answers + {stale} admitted in the 2 s tmx's count lags "
        f"+ {2 * workers} workers mid-request" + ("" if peak <= bound else "  ** PAST THE BOUND **")
    )


def _pike() -> str:
    text = (render_kamailio.SHIPPED / "pcscf" / "kamailio.cfg").read_text()
    for line in text.splitlines():
        if line.startswith("#!define PIKE_DENSITY"):
            return line.split()[-1]
    return "?"


DB_RATE = int(os.environ.get("IMS_BENCH_DB_RATE", "100"))


def _start_pcscf_on_mariadb(core, db) -> None:
    from tests.live.conftest import Daemon, _wait, sip_options

    config_dir = core.workdir / "pcscf-mariadb"
    files = render_kamailio.render(core.settings, "pcscf", config_dir=str(config_dir), bind_address=True)
    files.update(render_kamailio.render_secrets(core.settings, "pcscf", TEST_VALKEY_PASSWORD))
    for rel, text in mariadb.pcscf_on_mariadb(files, db.url).items():
        path = config_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    core.kamailio["pcscf"].stop()
    argv = ["kamailio", "-DD", "-E", *core.settings.kamailio["pcscf"].args(), "-f", str(config_dir / "kamailio.cfg")]
    daemon = Daemon("kamailio pcscf (MariaDB)", mariadb.command(argv), core.workdir / "kamailio-pcscf-mariadb.log")
    daemon.start(core.ns)
    address = core.settings.nf("pcscf").address
    _wait(lambda: (sip_options(core.ns, address) or "").startswith("SIP/2.0 200"), 20, "P-CSCF on MariaDB", daemon)
    core.pcrf.wait_for_peer(core.settings.nf("pcscf").fqdn, timeout=15)
    core.kamailio["pcscf"] = daemon


def bench_databases(core, workdir):
    print(f"\n== P-CSCF location write-through (ims_usrloc_pcscf db_mode 1): Valkey against MariaDB, {DB_RATE}/s offered")
    print(f"   {'database':<22} {'done/s':>7} {'p50 ms':>7} {'p99 ms':>7} {'failed':>6} {'contacts':>8} "
          f"{'DB PSS MB idle/load':>20} {'DB CPU %':>8} {'P-CSCF CPU %':>12}")
    valkey_pid = core.valkey.server.process.pid
    idle = procs.pss_mb(procs.tree_pids(valkey_pid))
    result, cpu, peak = _step(core, workdir / "db-valkey", DB_RATE)
    contacts = int(core.valkey.cli("pcscf", "DBSIZE").strip() or 0)
    _db_row("Valkey 8.1 (db_redis)", result, contacts, idle, peak["valkey"], cpu["valkey"], cpu["kamailio pcscf"])
    db = mariadb.MariaDb(core.ns, workdir / "mariadb").start()
    try:
        idle = procs.pss_mb(procs.tree_pids(db.process.pid))
        _start_pcscf_on_mariadb(core, db)
        groups = {**_groups(core), "mariadb": db.process.pid}
        result, cpu, _ = _step(core, workdir / "db-mariadb", DB_RATE, groups)
        load_pss = procs.pss_mb(procs.tree_pids(db.process.pid))
        _db_row(f"MariaDB {db.version()} (db_mysql)", result, db.contacts(), idle, load_pss, cpu["mariadb"], cpu["kamailio pcscf"])
    finally:
        core.kamailio["pcscf"].stop()
        core.start_cscf("pcscf")
        db.stop()


def _db_row(name, result, contacts, idle, loaded, db_cpu, pcscf_cpu) -> None:
    fmt = lambda v: "-" if v is None else f"{v:.0f}"  # noqa: E731
    print(
        f"   {name:<22} {result.completed_per_s:>7.1f} {fmt(result.percentile(50)):>7} {fmt(result.percentile(99)):>7} "
        f"{result.failed:>6} {contacts:>8} {idle:>9.1f} / {loaded:<8.1f} {db_cpu:>8.0f} {pcscf_cpu:>12.0f}"
    )


CALL_RATE = int(os.environ.get("IMS_BENCH_CALL_RATE", "10"))
CALLERS, CALLEES = 200, 4


def bench_calls(core, workdir):
    from benchmarks.live import calls

    ues = load.bench_ues(UES)
    callers = ues[:CALLERS]
    # The callees are the last subscribers, each on its own address where its SIPp UAS listens.
    callees = [load.BenchUe(ue.index, ue.name, f"127.0.9.{n + 1}") for n, ue in enumerate(ues[-CALLEES:])]
    target = f"{core.settings.nf('pcscf').address}:{render_kamailio.SIP_PORT}"
    domain = core.settings.ims_domain
    # Each caller and callee registers once (SEQUENTIAL injection: one call per line).
    registered = [
        load.run_step(core.ns, workdir / "register-callers", target, callers, domain, 50, CALLERS // 50),
        load.run_step(core.ns, workdir / "register-callees", target, callees, domain, CALLEES, 1),
    ]
    if any(r.completed < r.started for r in registered):
        print(f"   (registration before the calls: {[(r.completed, r.started) for r in registered]} completed/started)")
    meter = procs.CpuMeter(_groups(core), {})
    meter.start()
    result = calls.run_calls(core.ns, workdir / "calls", target, domain, callers, callees, CALL_RATE, SECONDS)
    spent, _ = meter.stop()
    cpu = {name: 100 * seconds / SECONDS for name, seconds in spent.items()}
    fmt = lambda v: "-" if v is None else f"{v:.0f}"  # noqa: E731
    pct = calls.CallResult.percentile
    print(
        "\n== calls: INVITE with SDP through P-, S-, S-, P-CSCF, rtpengine offer/answer on both legs, "
        f"callee rings {calls.RING_MS} ms then answers, held 1 s"
    )
    print(f"   {'calls/s':>7} {'calls':>6} {'failed':>6} {'180 p50':>8} {'180 p99':>8} {'200 p50':>8} {'200 p99':>8}  (ms)")
    print(
        f"   {result.rate:>7} {result.calls:>6} {result.failed:>6} {fmt(pct(result.ring_ms, 50)):>8} "
        f"{fmt(pct(result.ring_ms, 99)):>8} {fmt(pct(result.answer_ms, 50)):>8} {fmt(pct(result.answer_ms, 99)):>8}"
    )
    print("   CPU % of one core:", _cpu_line(cpu))

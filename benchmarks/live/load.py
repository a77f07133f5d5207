"""Registration load for the live core: many UEs, one SIPp, figures from its traces.

SIPp takes the AKA keys only inside `[authentication ...]`, where no `[field]` can be nested,
so one scenario cannot name the user of the call there. The scenario therefore carries one
authenticated REGISTER per user and picks it with a binary tree of variable tests on the
user's position (field 2 of the injection file): ~log2(N) steps per call, not N. Every user
has its own IMPI, IMPU and UE address (field 0, `-t ui`: one socket per address), so the
P-CSCF's per-address flood protection sees what it would see from real UEs. Via and Contact
name that address from the injection file: with `-t ui` SIPp's [local_ip] and [local_port]
stay the default 127.0.0.1 and 0.

Figures come from SIPp's own traces: `-trace_counts` (messages per scenario step: 200s,
503s, retransmissions) and `-trace_rtt` (every first-REGISTER-to-200 time).
"""

from __future__ import annotations

import csv
import resource
import statistics
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from tests import debian_root
from tests.netns import NetNamespace

# Every bench user has the same K/OP/AMF: the HSS still computes one vector per MAR, and
# SIPp checks each AUTN.
BENCH_K = "bench-secret-k01"
BENCH_OP = "ims-core-test-op"
BENCH_AMF = "00"


@dataclass(frozen=True)
class BenchUe:
    index: int
    name: str
    address: str


def bench_ues(count: int) -> list[BenchUe]:
    """UEs on 127.0.2.1 ... (the NFs live on 127.0.0.x)."""
    return [BenchUe(i, f"ue{i:05d}", f"127.0.{2 + i // 250}.{1 + i % 250}") for i in range(count)]


def _register(cseq: int, name: str, domain: str, authorization: str, rtd: str = "") -> str:
    return f"""<![CDATA[
      REGISTER sip:{domain} SIP/2.0
      Via: SIP/2.0/[transport] [field0]:5060;branch=[branch];rport
      Max-Forwards: 70
      From: <sip:{name}@{domain}>;tag=[pid]r[call_number]
      To: <sip:{name}@{domain}>
      Call-ID: [call_id]
      CSeq: {cseq} REGISTER
      Contact: <sip:{name}@[field0]:5060>;expires=600
      Expires: 600
      Supported: path
      {authorization}
      Content-Length: 0

    ]]>"""


def _tree(lo: int, hi: int, out: list[str]) -> None:
    out.append(f'  <label id="t{lo}_{hi}"/>')
    if hi - lo == 1:
        out.append(f'  <nop next="u{lo}"/>')
        return
    mid = (lo + hi) // 2
    out.append(f'  <nop><action><test assign_to="lt" variable="n" compare="less_than" value="{mid}"/></action></nop>')
    out.append(f'  <nop test="lt" next="t{lo}_{mid}"/>')
    out.append(f'  <nop next="t{mid}_{hi}"/>')
    _tree(lo, mid, out)
    _tree(mid, hi, out)


def scenario(ues: list[BenchUe], domain: str) -> str:
    """IMS-AKA registration of the injection file's user: REGISTER, 401, REGISTER, 200.

    A 503 (overload) to either REGISTER ends the call as shed; SIPp counts it per step.
    """
    first = _register(
        1, "[field1]", domain,
        f'Authorization: Digest username="[field1]@{domain}", realm="{domain}", nonce="", uri="sip:{domain}", response=""',
    )
    out = [
        '<?xml version="1.0" encoding="ISO-8859-1"?>',
        '<scenario name="ims-aka registration load">',
        f'  <send retrans="500" start_rtd="reg">{first}</send>',
        '  <recv response="100" optional="true"/>',
        '  <recv response="503" optional="true" next="shed"/>',
        '  <recv response="401" auth="true"/>',
        '  <nop><action><assignstr assign_to="idx" value="[field2]"/><todouble assign_to="n" variable="idx"/></action></nop>',
    ]
    _tree(0, len(ues), out)
    for position, ue in enumerate(ues):
        auth = f"[authentication username={ue.name}@{domain} aka_K={BENCH_K} aka_OP={BENCH_OP} aka_AMF={BENCH_AMF}]"
        out.append(f'  <label id="u{position}"/>')
        out.append(f'  <send retrans="500" next="answer">{_register(2, ue.name, domain, auth)}</send>')
    out += [
        '  <label id="answer"/>',
        '  <recv response="100" optional="true"/>',
        '  <recv response="503" optional="true" next="shed"/>',
        '  <recv response="200" rtd="reg" next="end"/>',
        '  <label id="shed"/>',
        '  <nop/>',
        '  <label id="end"/>',
        '</scenario>',
    ]
    return "\n".join(out) + "\n"


def injection(ues: list[BenchUe]) -> str:
    """address; user; position in the scenario's tree."""
    return "SEQUENTIAL\n" + "".join(f"{ue.address};{ue.name};{n};\n" for n, ue in enumerate(ues))


@dataclass
class StepResult:
    offered: float  # registrations started per second
    seconds: float
    started: int
    completed: int  # 200 to the authenticated REGISTER
    shed: int  # 503 to either REGISTER
    failed: int  # SIPp failed calls (timeouts, unexpected answers)
    retransmissions: int
    latencies_ms: list[float]
    sipp_cpu_seconds: float = 0.0  # the load generator's own CPU
    cpu_seconds: dict[str, float] = field(default_factory=dict)  # per daemon, filled by the caller
    events: dict[str, int] = field(default_factory=dict)  # what the CSCFs logged, filled by the caller

    @property
    def completed_per_s(self) -> float:
        return self.completed / self.seconds

    def percentile(self, p: float) -> float | None:
        if not self.latencies_ms:
            return None
        values = sorted(self.latencies_ms)
        return values[min(len(values) - 1, int(p / 100 * len(values)))]


# SIPp reads at most 64 KiB of scenario: one authenticated REGISTER per user fits ~70 users,
# so the UEs are split into groups of this size, one SIPp each, sharing the offered rate.
GROUP = 60


def run_step(ns: NetNamespace, workdir: Path, target: str, ues: list[BenchUe], domain: str, rate: int, seconds: int) -> StepResult:
    """Offer `rate` registrations/s for `seconds`; returns when every call has ended."""
    groups = [ues[i : i + GROUP] for i in range(0, len(ues), GROUP)]
    # SIPp processes are our children: their CPU shows in RUSAGE_CHILDREN once reaped.
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    calls = rate * seconds
    procs = []
    for n, group in enumerate(groups):
        step = workdir / f"reg-{rate}" / f"g{n:02d}"
        step.mkdir(parents=True, exist_ok=True)
        (step / "reg.xml").write_text(scenario(group, domain), encoding="utf-8")
        (step / "ues.csv").write_text(injection(group), encoding="utf-8")
        # Calls in proportion to the group's UEs (rate x seconds = one call per UE registers each once).
        first = n * GROUP
        share = calls * (first + len(group)) // len(ues) - calls * first // len(ues)
        if share == 0:
            continue
        sipp = [
            "sipp", target, "-sf", "reg.xml", "-inf", "ues.csv", "-t", "ui", "-ip_field", "0", "-p", "5060",
            # share calls over `seconds`: -r calls per -rp milliseconds
            "-r", str(share), "-rp", str(seconds * 1000), "-m", str(share), "-l", str(share), "-nostdin", "-nd",
            "-recv_timeout", "8000", "-max_retrans", "5", "-auth_uri", domain, "-max_socket", "1000",
            "-trace_counts", "-trace_rtt", "-rtt_freq", "100", "-trace_err", "-error_file", "errors.log",
            "-trace_stat", "-fd", "1", "-stf", "stat.csv",
        ]
        # cwd is where SIPp writes its traces: the group's own directory (bound into the root).
        argv = ns.prefix() + debian_root.command(["sh", "-c", f'cd "{step}" && exec "$@"', "sipp-load", *sipp])
        procs.append((step, subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)))
    result = StepResult(offered=rate, seconds=float(seconds), started=0, completed=0, shed=0, failed=0, retransmissions=0, latencies_ms=[])
    for step, proc in procs:
        out, _ = proc.communicate(timeout=seconds + 90)
        counts = _counts(step)
        if not counts:
            raise RuntimeError(f"sipp in {step} exited {proc.returncode} without traces:\n{out.decode(errors='replace')[-2000:]}")
        stat = _last_stat(step)
        result.started += int(stat.get("TotalCallCreated", 0))
        result.completed += counts.get(("200", "recv"), 0)
        result.shed += counts.get(("503", "recv"), 0)
        result.failed += int(stat.get("FailedCall(C)", 0))
        result.retransmissions += counts.get(("REGISTER", "retrans"), 0)
        result.latencies_ms += _rtts(step)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    spent = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    result.sipp_cpu_seconds = spent
    return result


def _one(pattern: str, step: Path) -> Path | None:
    found = sorted(step.glob(pattern))
    return found[-1] if found else None


def _counts(step: Path) -> dict[tuple[str, str], int]:
    """(message, "recv"|"sent"|"retrans") -> total over the scenario's steps."""
    path = _one("*_counts.csv", step)
    if path is None:
        return {}
    rows = list(csv.reader(path.read_text().splitlines(), delimiter=";"))
    header, last = rows[0], rows[-1]
    totals: dict[tuple[str, str], int] = {}
    for name, value in zip(header, last, strict=False):
        parts = name.split("_")
        if len(parts) < 3 or not value.strip().isdigit():
            continue
        message, kind = parts[1], parts[2].lower()
        key = (message, {"recv": "recv", "sent": "sent", "retrans": "retrans"}.get(kind, kind))
        totals[key] = totals.get(key, 0) + int(value)
    return totals


def _last_stat(step: Path) -> dict[str, str]:
    path = step / "stat.csv"
    if not path.exists():
        return {}
    rows = list(csv.reader(path.read_text().splitlines(), delimiter=";"))
    return dict(zip(rows[0], rows[-1], strict=False)) if len(rows) > 1 else {}


def rtt_rows(path: Path | None) -> list[tuple[str, float]]:
    """(RTD name, milliseconds) of a SIPp -trace_rtt file (Date_ms;response_time_ms;rtd_no)."""
    if path is None:
        return []
    rows = []
    for line in path.read_text().splitlines()[1:]:
        fields = line.split(";")
        if len(fields) >= 3:
            try:
                rows.append((fields[2].strip(), float(fields[1])))
            except ValueError:
                continue
    return rows


def _rtts(step: Path) -> list[float]:
    return [ms for name, ms in rtt_rows(_one("*_rtt.csv", step)) if name == "reg"]


def summary(result: StepResult) -> str:
    p50, p99 = result.percentile(50), result.percentile(99)
    fmt = lambda v: "-" if v is None else f"{v:.0f}"  # noqa: E731
    return (
        f"{result.offered:>7.0f} {result.completed_per_s:>9.1f} {fmt(p50):>7} {fmt(p99):>7} "
        f"{result.shed:>6} {result.failed:>6} {result.retransmissions:>7}"
    )


def median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0

"""Call set-up load for the live core: INVITE to 180 and to 200 through P-, S-, S-, P-CSCF
with the P-CSCF anchoring the media in rtpengine (offer and answer on both legs).

Callers are many registered UEs on their own addresses (one SIPp, `-t ui`); callees are a
few registered UEs, each a SIPp UAS on its own address that rings and answers at once, so
the figures are the core's own: INVITE to 180 and INVITE to 200 as the caller sees them.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from benchmarks.live import load
from tests import debian_root
from tests.live import sipp
from tests.netns import NetNamespace

# The caller's SDP names its own address (with -t ui, [local_ip] is not it).
SDP = sipp.SDP.replace("[local_ip]", "[field0]")
RING_MS = 50


def caller_scenario(domain: str, hold_ms: int) -> str:
    return f"""<?xml version="1.0" encoding="ISO-8859-1"?>
<scenario name="call set-up load">
  <send retrans="500" start_rtd="ring">
    <![CDATA[
      INVITE sip:[field3]@{domain} SIP/2.0
      Via: SIP/2.0/[transport] [field0]:5060;branch=[branch];rport
      Max-Forwards: 70
      From: <sip:[field1]@{domain}>;tag=[pid]inv[call_number]
      To: <sip:[field3]@{domain}>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: <sip:[field1]@[field0]:5060>
      Content-Type: application/sdp
      Content-Length: [len]

      {SDP}
    ]]>
  </send>
  <nop start_rtd="answer"/>
  <recv response="100" optional="true"/>
  <recv response="180" rtd="ring"/>
  <recv response="200" rtd="answer" rrs="true"/>
  <send>
    <![CDATA[
      ACK [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [field0]:5060;branch=[branch];rport
      [routes]
      Max-Forwards: 70
      [last_From:]
      [last_To:]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Contact: <sip:[field1]@[field0]:5060>
      Content-Length: 0

    ]]>
  </send>
  <pause milliseconds="{hold_ms}"/>
  <send retrans="500">
    <![CDATA[
      BYE [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [field0]:5060;branch=[branch];rport
      [routes]
      Max-Forwards: 70
      [last_From:]
      [last_To:]
      Call-ID: [call_id]
      CSeq: 2 BYE
      Contact: <sip:[field1]@[field0]:5060>
      Content-Length: 0

    ]]>
  </send>
  <recv response="200"/>
</scenario>
"""


@dataclass
class CallResult:
    rate: int
    calls: int
    failed: int
    ring_ms: list[float]
    answer_ms: list[float]

    @staticmethod
    def percentile(values: list[float], p: float) -> float | None:
        if not values:
            return None
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def _sipp(ns: NetNamespace, cwd: Path, args: list[str], **popen) -> subprocess.Popen:
    argv = ns.prefix() + debian_root.command(["sh", "-c", f'cd "{cwd}" && exec "$@"', "sipp", "sipp", *args])
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, **popen)


def run_calls(
    ns: NetNamespace, workdir: Path, target: str, domain: str, callers: list[load.BenchUe], callees: list[load.BenchUe],
    rate: int, seconds: int, hold_ms: int = 1000,
) -> CallResult:
    workdir.mkdir(parents=True, exist_ok=True)
    calls = rate * seconds
    servers = []
    for callee in callees:
        scenario = workdir / f"answer-{callee.name}.xml"
        # Rings, then answers 50 ms later: a 200 sent right behind the 180 can overtake it in
        # the P-CSCF (different workers), and the caller then never sees the 180.
        answer = sipp.answer(sipp.Ue(callee.name, "", "", "", "", callee.address))
        answer = answer.replace('  <send retrans="500">', f'  <pause milliseconds="{RING_MS}"/>\n  <send retrans="500">', 1)
        scenario.write_text(answer, encoding="utf-8")
        servers.append(_sipp(ns, workdir, [
            "-sf", scenario.name, "-i", callee.address, "-p", "5060", "-nostdin", "-nd", "-m",
            str(calls), "-timeout", f"{seconds + 30}s",
        ]))
    (workdir / "call.xml").write_text(caller_scenario(domain, hold_ms), encoding="utf-8")
    (workdir / "callers.csv").write_text(
        "SEQUENTIAL\n" + "".join(
            f"{ue.address};{ue.name};{ue.index};{callees[n % len(callees)].name};\n" for n, ue in enumerate(callers)
        ),
        encoding="utf-8",
    )
    uac = _sipp(ns, workdir, [
        target, "-sf", "call.xml", "-inf", "callers.csv", "-t", "ui", "-ip_field", "0", "-p", "5060",
        "-r", str(rate), "-m", str(calls), "-l", str(calls), "-nostdin", "-nd", "-recv_timeout", "8000", "-max_socket", "1000",
        "-trace_rtt", "-rtt_freq", "1", "-trace_stat", "-fd", "1", "-stf", "stat.csv", "-trace_err", "-error_file", "errors.log",
    ])
    uac.communicate(timeout=seconds + 60)
    for server in servers:
        try:
            server.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.communicate()
    stat = load._last_stat(workdir)
    ring, answer = _rtts(workdir)
    return CallResult(rate, calls, int(stat.get("FailedCall(C)", 0)), ring, answer)


def _rtts(step: Path) -> tuple[list[float], list[float]]:
    rows = load.rtt_rows(load._one("call_*_rtt.csv", step))
    return [ms for name, ms in rows if name == "ring"], [ms for name, ms in rows if name == "answer"]

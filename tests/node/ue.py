"""SIPp UEs beside the node: they reach the P-CSCF through its Service's ClusterIP, as a UE
reaches a P-CSCF Service from outside the pod network (kube-proxy's DNAT on the node).

SIPp is the Debian 13 root's (3.7.3), run in the node's network namespace from one of the
node's own addresses. Scenarios are the live tier's (tests/live/sipp.py).
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from components.render import kamailio as render_kamailio
from tests import debian_root
from tests.live import sipp


@dataclass
class SippRun:
    argv: list[str]
    messages_file: Path
    timeout: int
    proc: subprocess.Popen | None = None
    returncode: int | None = None
    output: str = ""

    def start(self, background: bool) -> SippRun:
        self.messages_file.unlink(missing_ok=True)
        self.proc = subprocess.Popen(
            self.argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        return self if background else self.wait()

    def wait(self) -> SippRun:
        assert self.proc is not None
        try:
            out, _ = self.proc.communicate(timeout=self.timeout + 10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
        self.returncode = self.proc.returncode
        self.output = out.decode(errors="replace")[-3000:]
        return self

    @property
    def messages(self) -> str:
        try:
            return self.messages_file.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def received(self, start_line_prefix: str) -> list[str]:
        """Messages the UE received whose first line starts with `start_line_prefix`."""
        found = []
        for block in re.split(r"(?m)^-{20,} .*$", self.messages):
            kind, _, message = block.strip("\n").partition("\n")
            if "message received" in kind and message.lstrip("\n").startswith(start_line_prefix):
                found.append(message.lstrip("\n"))
        return found

    def explain(self) -> str:
        return f"sipp exited {self.returncode}\n{self.output}\n--- messages ---\n{self.messages[-6000:]}"


@dataclass
class Ues:
    """Runs SIPp as a UE against the P-CSCF Service, inside the node's network namespace."""

    netns: str
    workdir: Path  # under /tmp: the Debian root sees the host's /tmp
    pcscf: str  # the P-CSCF Service's ClusterIP
    domain: str

    def run(
        self, ue: sipp.Ue, scenario: str, name: str, *, timeout: int = 20, background: bool = False, extra: tuple = ()
    ) -> SippRun:
        path = self.workdir / f"{name}.xml"
        path.write_text(scenario, encoding="utf-8")
        messages = self.workdir / f"{name}.messages"
        argv = [
            "sipp", f"{self.pcscf}:{render_kamailio.SIP_PORT}", "-sf", str(path), "-i", ue.address,
            "-p", str(ue.port), "-m", "1", "-nostdin", "-trace_msg", "-message_file", str(messages),
            "-trace_err", "-error_file", str(self.workdir / f"{name}.errors"),
            "-timeout", f"{timeout}s", "-timeout_error", "-recv_timeout", f"{timeout * 1000}",
            "-max_retrans", "3", "-nd", "-auth_uri", self.domain, *extra,
        ]  # fmt: skip
        full = ["nsenter", f"--net=/run/netns/{self.netns}", *debian_root.command(argv)]
        return SippRun(full, messages, timeout).start(background)

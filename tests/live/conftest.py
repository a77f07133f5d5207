"""Live tier fixtures: the product's rendered configs run by real daemons on loopback.

One network namespace per session (tests/netns.py), whose only resolver is CoreDNS serving the
rendered zones, and in it: valkey-server, rtpengine (userspace), the Cx HSS and Rx PCRF test
doubles (in this process, their sockets opened inside the namespace), and Kamailio as P-, I- and
S-CSCF with the files `components.render.kamailio` renders for the loopback profile. SIPp UEs
enter through the P-CSCF.

Kamailio, Valkey, rtpengine and SIPp are the versions the images ship (versions.env), run from
the Debian 13 root (tests/debian_root.py): Kamailio 6.0, valkey-server 8.1, rtpengine 12.5,
SIPp 3.7.

Every daemon is started and stopped by its PID; the tail of each daemon's log is attached to
a failing test's report.

The live profile turns IPsec off (SIPp speaks no IPsec/xfrm; the vm tier, tests/vm, covers it
with real ESP) and keeps Rx on, as the default stack has it: the P-CSCF talks Rx to the PCRF
test double (tests/doubles/rx_pcrf.py) at the profile's pcrfAddress.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from components.render import kamailio as render_kamailio
from components.render import open5gs as render_open5gs
from components.settings import CSCF_ROLES, Settings
from tests import coredns_daemon, debian_root
from tests.doubles.cx_hss import CxHssTestDouble, Subscriber
from tests.doubles.rx_pcrf import RxPcrfTestDouble
from tests.live import sipp
from tests.live.rtpengine_daemon import RtpengineDaemon, running_rtpengine
from tests.netns import NetNamespace, can_create_namespaces
from tests.profiles import TEST_VALKEY_PASSWORD, loopback_settings
from tests.tooling import ROOT, missing
from tests.valkey_daemon import Valkey as ValkeyServer

LOG_TAIL_LINES = 150
# The Kamailio image's entrypoint (a random server_id per start), run by the live CSCFs as in a pod.
KAMAILIO_ENTRYPOINT = ROOT / "dockerfiles" / "kamailio" / "kamailio-start"
DAEMONS: list[Daemon] = []


def pytest_configure(config):
    config.addinivalue_line("markers", "live: real daemons on loopback (tests/live)")


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/live/" in str(item.fspath):
            item.add_marker(pytest.mark.live)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed and "tests/live/" in str(item.fspath):
        for daemon in DAEMONS:
            report.sections.append((f"log of {daemon.name} (pid {daemon.pid}, last {LOG_TAIL_LINES} lines)", daemon.tail()))


@dataclass
class Daemon:
    name: str
    argv: list[str]
    log: Path
    proc: subprocess.Popen | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def start(self, ns: NetNamespace) -> Daemon:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "wb") as out:
            # `ip netns exec` and the Debian root's wrapper exec the program: the PID we hold is the daemon's.
            # Its own process group: Kamailio forks workers, and stop() must end them with it.
            self.proc = subprocess.Popen(
                ns.prefix() + self.argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        DAEMONS.append(self)
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM to the daemon's process group (the daemon and the workers it forked), then
        SIGKILL to whatever of that group is left: no orphaned worker outlives the test."""
        if self.proc is None:
            return
        group = self.proc.pid  # start_new_session: the group id is the daemon's PID
        if self.alive():
            _signal_group(group, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        _signal_group(group, signal.SIGKILL)

    def tail(self, lines: int = LOG_TAIL_LINES) -> str:
        try:
            text = self.log.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


def _signal_group(group: int, sig: int) -> None:
    try:
        os.killpg(group, sig)
    except ProcessLookupError:
        pass


# --- the profile --------------------------------------------------------------------------


@pytest.fixture(scope="session")
def live_settings() -> Settings:
    # IPsec off: SIPp cannot do IPsec. Rx on (the stack default): the PCRF double answers.
    return loopback_settings(stack="live", pcscfIpsec=False, pcscfRx=True)


@pytest.fixture(scope="session")
def netns(live_settings, tmp_path_factory) -> NetNamespace:
    """Name resolution for every daemon: the IMS DNS, serving the zones the product renders.

    The one place that decides how names resolve. The namespace's resolv.conf names CoreDNS
    (tests/coredns_daemon.py: the rendered Corefile and zones, on the loopback profile's
    CoreDNS address) and its hosts file holds only localhost, so every FQDN Kamailio and cdp
    look up is answered from the zone.
    """
    reason = can_create_namespaces()
    if reason:
        missing(reason, "run the live tier as root (CI does)")
    resolver = live_settings.nf("coredns").address
    ns = NetNamespace(f"imslive{os.getpid() % 100000}", hosts={}, nameserver=resolver).create()
    try:
        with coredns_daemon.serving(live_settings, tmp_path_factory.mktemp("ims-dns"), netns=ns):
            yield ns
    finally:
        ns.destroy()


@pytest.fixture(scope="session")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("live")


# --- daemons ------------------------------------------------------------------------------


def _wait(predicate, timeout: float, what: str, daemon: Daemon | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if daemon is not None and not daemon.alive():
            raise RuntimeError(f"{daemon.name} exited while waiting for {what}:\n{daemon.tail()}")
        if predicate():
            return
        time.sleep(0.1)
    raise TimeoutError(f"{what} not within {timeout}s" + (f":\n{daemon.tail()}" if daemon else ""))


def _tcp_open(ns: NetNamespace, address: str, port: int) -> bool:
    with ns.entered():
        try:
            socket.create_connection((address, port), timeout=0.3).close()
            return True
        except OSError:
            return False


@dataclass
class Valkey:
    """valkey-server on the rendered valkey.conf and password file (tests/valkey_daemon.py)."""

    settings: Settings
    ns: NetNamespace
    server: ValkeyServer

    def cli(self, role: str, *args: str) -> str:
        return self.server.cli(*args, db=self.settings.valkey_databases[role]).stdout

    def restart(self, sig: int = signal.SIGKILL) -> None:
        """SIGKILL is a crash (only the append-only file brings the state back)."""
        self.server.stop(sig)
        self.server.start()


@pytest.fixture(scope="session")
def valkey(live_settings, netns, workdir) -> Valkey:
    debian_root.require()
    server = ValkeyServer(live_settings, TEST_VALKEY_PASSWORD, workdir / "valkey", netns=netns)
    server.render()
    server.start()
    try:
        yield Valkey(live_settings, netns, server)
    finally:
        server.stop()


@pytest.fixture(scope="session")
def rtpengine(live_settings, netns) -> RtpengineDaemon:
    """rtpengine on the product's rendered rtpengine.conf (the one start-up of the live tier)."""
    with running_rtpengine(live_settings, netns=netns) as daemon:
        DAEMONS.append(Daemon("rtpengine", daemon.process.args, daemon.log_path, daemon.process))
        yield daemon


# --- subscribers and the HSS --------------------------------------------------------------


@dataclass
class Users:
    alice: sipp.Ue
    bob: sipp.Ue
    carol: sipp.Ue  # provisioned, for the wrong-key and never-registered cases
    mallory: sipp.Ue  # not provisioned in the HSS
    dave: sipp.Ue  # provisioned; test_isc gives him an iFC towards its application server
    erin: sipp.Ue  # provisioned; test_registration_expiry lets her registration lapse
    grace: sipp.Ue  # provisioned; test_registration_expiry registers and at once de-registers her
    all: list[sipp.Ue] = field(default_factory=list)


@pytest.fixture(scope="session")
def users(live_settings) -> Users:
    domain = live_settings.ims_domain

    def ue(name: str, n: int, k: str, aliases: tuple[str, ...] = ()) -> sipp.Ue:
        return sipp.Ue(
            name=name, impi=f"{name}@{domain}", k=k, op="ims-core-test-op", amf="00", address=f"127.0.0.{100 + n}",
            aliases=aliases,
        )

    u = Users(
        alice=ue("alice", 1, "alice-secret-k01", aliases=(f"sip:alice.office@{domain}",)),
        bob=ue("bob", 2, "bob-secret-key02"),
        carol=ue("carol", 3, "carol-secret-k03"),
        mallory=ue("mallory", 4, "mallory-secret04"),
        dave=ue("dave", 5, "dave-secret-key5"),
        erin=ue("erin", 6, "erin-secret-key6"),
        grace=ue("grace", 7, "grace-secret-k07"),
    )
    u.all = [u.alice, u.bob, u.carol, u.mallory, u.dave, u.erin, u.grace]
    return u


def _connect_peers(settings: Settings, nf: str) -> list[tuple[str, str, int]]:
    """Where the rendered freeDiameter conf of the HSS or PCRF connects: the peers with a fixed
    address (the CSCFs in the loopback profile; the live tier has no PGW)."""
    peers = render_open5gs.diameter_peers(settings, nf)
    return [(identity, address, render_kamailio.DIAMETER_PORT) for identity, address in peers if address]


@pytest.fixture(scope="session")
def hss(live_settings, netns, users) -> CxHssTestDouble:
    nf = live_settings.nf("hss")
    subscribers = [
        Subscriber(impi=u.impi, k=u.k.encode(), op=u.op.encode(), amf=u.amf.encode(), impus=[u.impu, *u.aliases])
        for u in (users.alice, users.bob, users.carol, users.dave, users.erin, users.grace)
    ]
    double = CxHssTestDouble(
        subscribers,
        origin_host=nf.fqdn,
        origin_realm=nf.realm,
        bind_address=nf.address,
        port=render_kamailio.DIAMETER_PORT,
        # No Server-Name: the I-CSCF must pick the S-CSCF from Valkey by capability (the
        # seeded s_cscf_capabilities row has capability 0). An empty Server-Capabilities
        # would not do: cdp drops a message with an empty grouped AVP.
        mandatory_capabilities=[0],
    )
    with netns.entered():
        double.start()
        # Like open5gs' freeDiameter (ConnectPeer per CSCF in the rendered hss.conf), the HSS
        # connects to the CSCFs too (RFC 6733 election keeps one connection per peer).
        double.connect_peers(_connect_peers(live_settings, "hss"))
    yield double
    double.stop()


@pytest.fixture(scope="session")
def pcrf(live_settings, netns) -> RxPcrfTestDouble:
    """The PCRF double the P-CSCF's cdp connects to (Rx); accepts every AAR unless a test
    sets its ``aar_policy`` (and restores it)."""
    nf = live_settings.nf("pcrf")
    double = RxPcrfTestDouble(
        origin_host=nf.fqdn, origin_realm=nf.realm, bind_address=nf.address, port=render_kamailio.DIAMETER_PORT
    )
    with netns.entered():
        double.start()
        double.connect_peers(_connect_peers(live_settings, "pcrf"))
    yield double
    double.stop()


# --- the CSCFs ----------------------------------------------------------------------------


def sip_options(ns: NetNamespace, address: str, port: int = render_kamailio.SIP_PORT, timeout: float = 0.5) -> str | None:
    """Status line of the answer to an OPTIONS sent from inside the namespace, or None."""
    branch = uuid.uuid4().hex
    with ns.entered():
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.bind(("127.0.0.1", 0))
            local = sock.getsockname()[1]
            request = (
                f"OPTIONS sip:{address}:{port} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{local};branch=z9hG4bK{branch};rport\r\n"
                f"Max-Forwards: 2\r\nFrom: <sip:probe@localhost>;tag={branch[:8]}\r\nTo: <sip:{address}:{port}>\r\n"
                f"Call-ID: {branch}@probe\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
            )
            sock.settimeout(timeout)
            sock.sendto(request.encode(), (address, port))
            data, _ = sock.recvfrom(65535)
            return data.decode(errors="replace").split("\r\n", 1)[0]
        except OSError:
            return None
        finally:
            sock.close()


@dataclass
class Core:
    settings: Settings
    ns: NetNamespace
    hss: CxHssTestDouble
    pcrf: RxPcrfTestDouble | None
    valkey: Valkey
    rtpengine: RtpengineDaemon
    kamailio: dict[str, Daemon]
    workdir: Path
    users: Users

    def start_cscf(self, role: str, *, pid_namespace: bool = False) -> Daemon:
        """(Re)start one role from its rendered config directory and wait until it is ready.

        Kamailio starts through the image's entrypoint script, with the arguments the pod gets
        (the memory pools of the stack settings: kamailio -m/-M); `pid_namespace` makes its
        processes PID 1, 2, ... as in a container, the same at every start."""
        config_dir = self.workdir / role
        args = ["-DD", "-E", *self.settings.kamailio[role].args(), "-f", str(config_dir / "kamailio.cfg")]
        daemon = Daemon(
            f"kamailio {role}",
            debian_root.command(["sh", "-c", KAMAILIO_ENTRYPOINT.read_text(), "kamailio-start", *args], pid_namespace=pid_namespace),
            self.workdir / f"kamailio-{role}.log",
        ).start(self.ns)
        address = self.settings.nf(role).address
        _wait(lambda: (sip_options(self.ns, address) or "").startswith("SIP/2.0 200"), 15, f"{role} answering OPTIONS", daemon)
        if role in ("icscf", "scscf"):
            self.hss.wait_for_peer(self.settings.nf(role).fqdn, timeout=15)
        if role == "pcscf" and self.settings.pcscf_rx:
            self.pcrf.wait_for_peer(self.settings.nf(role).fqdn, timeout=15)
        self.kamailio[role] = daemon
        return daemon

    def sipp(
        self, ue: sipp.Ue, scenario: str, name: str, *, timeout: int = 15, background: bool = False,
        extra_args: tuple[str, ...] = (), target: str | None = None,
    ):
        """Run SIPp as `ue` against the P-CSCF's Gm port (or `target`, "address:port");
        `extra_args` e.g. ("-t", "t1") or RTP options."""
        return SippRun(self, ue, scenario, name, timeout, extra_args, target=target).start(background)


@dataclass
class SippRun:
    core: Core
    ue: sipp.Ue
    scenario: str
    name: str
    timeout: int
    extra_args: tuple[str, ...] = ()
    target: str | None = None
    proc: subprocess.Popen | None = None
    returncode: int | None = None
    output: str = ""

    @property
    def messages_file(self) -> Path:
        return self.core.workdir / f"{self.name}.messages"

    def start(self, background: bool) -> SippRun:
        scenario = self.core.workdir / f"{self.name}.xml"
        scenario.write_text(self.scenario, encoding="utf-8")
        target = self.target or f"{self.core.settings.nf('pcscf').address}:{render_kamailio.SIP_PORT}"
        argv = [
            "sipp", target, "-sf", str(scenario),
            "-i", self.ue.address, "-p", str(self.ue.port), "-m", "1", "-nostdin",
            "-trace_msg", "-message_file", str(self.messages_file),
            "-trace_err", "-error_file", str(self.core.workdir / f"{self.name}.errors"),
            "-timeout", f"{self.timeout}s", "-timeout_error", "-recv_timeout", f"{self.timeout * 1000}",
            "-max_retrans", "3", "-nd",
            # Digest uri = the REGISTER's Request-URI (SIPp's default is remote_ip:remote_port).
            "-auth_uri", self.core.settings.ims_domain,
            *self.extra_args,
        ]
        if self.messages_file.exists():
            self.messages_file.unlink()
        self.proc = subprocess.Popen(self.core.ns.prefix() + debian_root.command(argv), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        if not background:
            self.wait()
        return self

    def wait(self) -> SippRun:
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
        return f"sipp {self.name} exited {self.returncode}\n{self.output}\n--- messages ---\n{self.messages[-6000:]}"


@pytest.fixture(scope="session")
def core(live_settings, netns, workdir, valkey, rtpengine, hss, pcrf, users) -> Core:
    debian_root.require()
    # The I-CSCF rows go in the way the pod's init container writes them: the shipped script into valkey-cli.
    valkey.server.cli(db=live_settings.valkey_databases["icscf"], stdin=render_kamailio.icscf_seed_script(live_settings))
    for role in CSCF_ROLES:
        config_dir = workdir / role
        files = render_kamailio.render(live_settings, role, config_dir=str(config_dir), bind_address=True)
        files.update(render_kamailio.render_secrets(live_settings, role, TEST_VALKEY_PASSWORD))
        for rel, text in files.items():
            path = config_dir / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    c = Core(live_settings, netns, hss, pcrf, valkey, rtpengine, {}, workdir, users)
    try:
        for role in ("scscf", "icscf", "pcscf"):
            c.start_cscf(role)
        yield c
    finally:
        for daemon in c.kamailio.values():
            daemon.stop()


# --- the test doubles' own failures -------------------------------------------------------


@pytest.fixture(autouse=True)
def test_doubles_without_errors(request):
    """A failure inside the HSS or PCRF double (logged, and answered DIAMETER_UNABLE_TO_COMPLY
    so Kamailio is not left waiting) fails the test during which it happened."""
    yield
    found = {}
    for name in ("hss", "pcrf"):
        if name in request.fixturenames:
            errors = request.getfixturevalue(name).take_errors()
            if errors:
                found[name] = errors
    assert not found, f"test double errors: {found}"

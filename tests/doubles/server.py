"""``DiameterServerDouble``: the threaded TCP Diameter server the test doubles share.

It owns what every double does the same way: the listening socket and its accept thread,
one thread per connection, the base protocol (CER/CEA, DWR/DWA, DPR/DPA, RFC 6733), the
records of answered application requests, the list of failures and the peers.
A subclass (``CxHssTestDouble``, ``RxPcrfTestDouble``) names its ``application`` (a
``ServedApplication``) and implements ``_application_request`` for the requests of that
application; it may override ``_on_answer`` (answers to requests it sent) and
``_no_request_message``. Also here: the answer pieces both applications build the same way
(``required_avps``, ``unknown_mandatory``, ``session_answer``, ``result_avp``).

A failure while answering is logged, kept in ``errors`` and answered with
DIAMETER_UNABLE_TO_COMPLY: no thread dies silently.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import ClassVar, Generic, Protocol, Self, TypeVar

from . import diameter as d


class _Record(Protocol):
    @property
    def command(self) -> str: ...


R = TypeVar("R", bound=_Record)

VENDOR_3GPP = 10415
BASE_COMMAND_NAMES = {
    d.CMD_CAPABILITIES_EXCHANGE: "CER",
    d.CMD_DEVICE_WATCHDOG: "DWR",
    d.CMD_DISCONNECT_PEER: "DPR",
}


def unknown_mandatory(
    avps: list[d.Avp], known_3gpp: frozenset[int], known_ietf: frozenset[int] = frozenset()
) -> tuple[tuple[int, int], ...]:
    """(code, vendor) of the top-level M-bit AVPs that are neither base, ``known_ietf`` nor 3GPP ``known_3gpp``."""
    return tuple(
        (a.code, a.vendor_id)
        for a in avps
        if a.mandatory
        and not (
            (a.vendor_id == 0 and (a.code in d.BASE_AVP_CODES or a.code in known_ietf))
            or (a.vendor_id == VENDOR_3GPP and a.code in known_3gpp)
        )
    )


def required_avps(*application: tuple[int, int]) -> tuple[tuple[int, int], ...]:
    """(code, vendor) a request must carry: Session-Id, ``application``'s, Origin-*, Destination-Realm."""
    return ((d.AVP_SESSION_ID, 0), *application, (d.AVP_ORIGIN_HOST, 0), (d.AVP_ORIGIN_REALM, 0), (d.AVP_DESTINATION_REALM, 0))


def session_answer(req: d.Message) -> d.Message:
    """The answer header for ``req``, with its Session-Id if it has one."""
    ans = req.answer()
    sid = req.find(d.AVP_SESSION_ID)
    if sid is not None:
        ans.add(sid)
    return ans


def result_avp(code: int, experimental: bool) -> d.Avp:
    """Result-Code, or Experimental-Result {Vendor-Id 10415, Experimental-Result-Code} for a 3GPP code."""
    if experimental:
        return d.Avp.grouped(
            d.AVP_EXPERIMENTAL_RESULT,
            [d.Avp.u32(d.AVP_VENDOR_ID, VENDOR_3GPP), d.Avp.u32(d.AVP_EXPERIMENTAL_RESULT_CODE, code)],
        )
    return d.Avp.u32(d.AVP_RESULT_CODE, code)


@dataclass
class Connection:
    """One accepted peer connection and what its CER said."""

    sock: socket.socket
    addr: tuple
    thread: threading.Thread | None = None
    peer_host: str | None = None
    peer_realm: str | None = None
    open: bool = False
    send_lock: threading.Lock = field(default_factory=threading.Lock)

    def send(self, msg: d.Message) -> None:
        with self.send_lock:
            self.sock.sendall(msg.encode())


@dataclass(frozen=True)
class ServedApplication:
    """The Diameter application a double serves, and how its logs and threads are named."""

    id: int  # Auth-Application-Id, e.g. 16777216
    name: str  # e.g. "Cx"
    role: str  # the node the double stands in for, e.g. "HSS"
    command_names: Mapping[int, str]
    log: logging.Logger

    @property
    def label(self) -> str:
        """Prefix of log lines, e.g. "Cx HSS double"."""
        return f"{self.name} {self.role} double"

    @property
    def thread_label(self) -> str:
        """Prefix of thread names, e.g. "cx-hss"."""
        return f"{self.name}-{self.role}".lower()


class DiameterServerDouble(Generic[R]):
    """Socket server, connection threads, base protocol, request records and errors."""

    application: ClassVar[ServedApplication]  # set by each subclass

    def __init__(self, *, origin_host: str, origin_realm: str, bind_address: str, port: int, **local: object):
        """``local``: further ``d.LocalPeer`` fields (e.g. ``product_name``)."""
        self.origin_host = origin_host
        self.origin_realm = origin_realm
        self.bind_address = bind_address
        self.port = port
        self.local = d.LocalPeer(
            origin_host=origin_host,
            origin_realm=origin_realm,
            auth_application_ids=((VENDOR_3GPP, self.application.id),),
            supported_vendor_ids=(VENDOR_3GPP,),
            **local,
        )
        self.base = d.BaseProtocol(self.local)
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._records: list[R] = []
        self._errors: list[str] = []
        # Origin-Host of every CER refused for lacking Host-IP-Address (RFC 6733 5.3.1).
        self.refused_cers: list[str] = []
        self._connectors: list[threading.Thread] = []
        self._conns: list[Connection] = []
        self._listener: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None
        self._stopping = threading.Event()

    # --- lifecycle -----------------------------------------------------------------
    def start(self) -> Self:
        """Bind and listen; returns once the socket accepts connections."""
        if self._listener is not None:
            raise RuntimeError("already started")
        family = socket.AF_INET6 if ":" in self.bind_address else socket.AF_INET
        lsock = socket.socket(family, socket.SOCK_STREAM)
        lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            lsock.bind((self.bind_address, self.port))
            lsock.listen(16)
        except OSError:
            lsock.close()
            raise
        lsock.settimeout(0.2)
        self.port = lsock.getsockname()[1]
        self._listener = lsock
        self._stopping.clear()
        self._accept_thread = threading.Thread(
            target=self._accept_loop, name=f"{self.application.thread_label}-accept:{self.port}", daemon=True
        )
        self._accept_thread.start()
        app = self.application
        app.log.info("%s %s listening on %s:%d", app.label, self.origin_host, self.bind_address, self.port)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Close the listener and every connection, then join all threads."""
        self._stopping.set()
        if self._accept_thread is not None:
            self._accept_thread.join(timeout)
        if self._listener is not None:
            self._listener.close()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            try:
                conn.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for conn in conns:
            if conn.thread is not None:
                conn.thread.join(timeout)
            conn.sock.close()
        with self._lock:
            connectors = list(self._connectors)
            self._connectors.clear()
        for thread in connectors:
            thread.join(timeout)
        alive = [c.thread.name for c in conns if c.thread is not None and c.thread.is_alive()]
        alive += [t.name for t in connectors if t.is_alive()]
        if self._accept_thread is not None and self._accept_thread.is_alive():
            alive.append(self._accept_thread.name)
        self._listener = None
        self._accept_thread = None
        if alive:
            raise RuntimeError(f"threads still running after stop(): {alive}")

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def address(self) -> tuple[str, int]:
        return self.bind_address, self.port

    # --- inspection ----------------------------------------------------------------
    @property
    def requests(self) -> list[R]:
        with self._lock:
            return list(self._records)

    def requests_of(self, command: str) -> list[R]:
        return [r for r in self.requests if r.command == command]

    def clear_requests(self) -> None:
        with self._lock:
            self._records.clear()

    def wait_for_request(self, command: str, timeout: float = 5.0, predicate: Callable[[R], bool] | None = None) -> R:
        """The first recorded request of ``command`` (matching ``predicate``), waiting for it."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for rec in self._records:
                    if rec.command == command and (predicate is None or predicate(rec)):
                        return rec
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(self._no_request_message(command, timeout))
                self._changed.wait(left)

    def _no_request_message(self, command: str, timeout: float) -> str:
        """The TimeoutError text of ``wait_for_request`` (called with the lock held)."""
        return f"no {command} within {timeout}s; got {[r.command for r in self._records]}"

    @property
    def errors(self) -> list[str]:
        """Failures met while serving (each was logged and answered)."""
        with self._lock:
            return list(self._errors)

    def take_errors(self) -> list[str]:
        """Return and forget the failures so far (for tests that provoke them on purpose)."""
        with self._lock:
            taken, self._errors = self._errors, []
            return taken

    @property
    def peers(self) -> list[str]:
        """Origin-Host of every peer whose CER was accepted and whose connection is open."""
        with self._lock:
            return [c.peer_host for c in self._conns if c.open and c.peer_host]

    def wait_for_peer(self, origin_host: str | None = None, timeout: float = 10.0) -> str:
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for host in self.peers:
                    if origin_host is None or host == origin_host:
                        return host
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no peer {origin_host or ''} connected within {timeout}s")
                self._changed.wait(left)

    # --- for subclasses ------------------------------------------------------------
    def _application_request(self, conn: Connection, msg: d.Message) -> d.Message:
        """The answer to a request of ``application_id`` (any command code)."""
        raise NotImplementedError

    def _on_answer(self, conn: Connection, msg: d.Message) -> None:
        """An answer arrived (to a request this double sent, if any)."""
        self._log(logging.INFO, "ignoring answer %s from %s", msg.command_code, conn.addr)

    def _add_record(self, rec: R) -> None:
        with self._changed:
            self._records.append(rec)
            self._changed.notify_all()

    def _log(self, level: int, fmt: str, *args: object) -> None:
        self.application.log.log(level, "%s: " + fmt, self.application.label, *args)

    def _log_exception(self, fmt: str, *args: object) -> None:
        self.application.log.exception("%s: " + fmt, self.application.label, *args)

    def _error(self, text: str) -> None:
        self._log(logging.ERROR, "%s", text)
        with self._lock:
            self._errors.append(text)

    def connect_peers(self, peers: list[tuple[str, str, int]], retry: float = 1.0) -> None:
        """Open the connections to ``peers`` (Diameter identity, address, port) as well, as
        open5gs' freeDiameter does for each ConnectPeer (the HSS and PCRF connect to the CSCFs):
        one thread per peer connects whenever no connection with that peer is open (one
        connection per peer, as RFC 6733 5.6.4 election leaves), until ``stop()``. Start it
        inside the network namespace."""
        for identity, host, port in peers:
            thread = threading.Thread(
                target=self._connect_loop,
                args=(identity, host, port, retry),
                name=f"{self.application.thread_label}-connect:{host}:{port}",
                daemon=True,
            )
            with self._lock:
                self._connectors.append(thread)
            thread.start()

    def _connect_loop(self, identity: str, host: str, port: int, retry: float) -> None:
        while not self._stopping.is_set():
            if identity in self.peers:  # the peer connected to us: nothing to do
                self._stopping.wait(retry)
                continue
            try:
                sock = socket.create_connection((host, port), timeout=2)
            except OSError:
                self._stopping.wait(retry)
                continue
            conn = Connection(sock, (host, port))
            try:
                sock.settimeout(5)
                conn.send(d.build_cer(self.local, sock.getsockname()[0]))
                raw = d.read_raw_message(sock)
                cea = d.Message.decode(raw) if raw else None
            except (OSError, d.DiameterDecodeError):
                cea = None
            if cea is None or cea.result_code != d.DIAMETER_SUCCESS:
                self._log(logging.INFO, "CER to %s:%d: %s", host, port, cea.result_code if cea else "no CEA")
                sock.close()
                self._stopping.wait(retry)
                continue
            sock.settimeout(None)
            with self._changed:
                if self._stopping.is_set():  # stop() has taken its list of connections
                    sock.close()
                    return
                conn.peer_host = cea.str_of(d.AVP_ORIGIN_HOST)
                conn.peer_realm = cea.str_of(d.AVP_ORIGIN_REALM)
                conn.open = True
                self._conns.append(conn)
                self._changed.notify_all()
            self._serve(conn)  # until the peer or stop() closes it; then connect again
            self._stopping.wait(retry)

    # --- networking ----------------------------------------------------------------
    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stopping.is_set():
            try:
                sock, addr = self._listener.accept()
            except TimeoutError:
                continue
            except OSError as exc:
                if not self._stopping.is_set():
                    self._error(f"accept failed: {exc!r}")
                return
            sock.settimeout(None)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = Connection(sock, addr)
            conn.thread = threading.Thread(
                target=self._serve, args=(conn,), name=f"{self.application.thread_label}-conn:{addr}", daemon=True
            )
            with self._lock:
                self._conns.append(conn)
            conn.thread.start()

    def _serve(self, conn: Connection) -> None:
        self._log(logging.INFO, "connection from %s", conn.addr)
        try:
            while not self._stopping.is_set():
                try:
                    raw = d.read_raw_message(conn.sock)
                except d.DiameterDecodeError as exc:
                    self._error(f"{conn.addr}: undecodable header, closing: {exc}")
                    return
                except (ConnectionError, OSError) as exc:
                    if not self._stopping.is_set():
                        self._log(logging.INFO, "%s gone: %r", conn.addr, exc)
                    return
                if raw is None:
                    return
                answer, close = self._process(conn, raw)
                if answer is not None:
                    try:
                        conn.send(answer)
                    except OSError as exc:
                        self._error(f"{conn.addr}: send failed: {exc!r}")
                        return
                if close:
                    return
        except Exception as exc:  # noqa: BLE001 - last resort: never die silently
            self._log_exception("connection %s crashed", conn.addr)
            self._error(f"{conn.addr}: connection handler crashed: {exc!r}")
        finally:
            with self._changed:
                conn.open = False
                self._changed.notify_all()
            try:
                conn.sock.close()
            except OSError:
                pass

    def _process(self, conn: Connection, raw: bytes) -> tuple[d.Message | None, bool]:
        """(answer or None, close connection after sending)."""
        names = self.application.command_names
        try:
            msg = d.Message.decode(raw)
        except d.DiameterDecodeError as exc:
            _, hdr = d.Message.decode_header(raw[: d.HEADER_LEN])
            self._error(f"{conn.addr}: undecodable {names.get(hdr.command_code, hdr.command_code)}: {exc}")
            if not hdr.request:
                return None, False
            return self.base.error_answer(hdr, exc.result_code, str(exc)), False
        if not msg.request:
            self._on_answer(conn, msg)
            return None, False
        try:
            return self._dispatch(conn, msg)
        except Exception as exc:  # noqa: BLE001 - answer every request, keep the thread
            self._log_exception("failure answering %s", names.get(msg.command_code))
            self._error(f"failure answering {names.get(msg.command_code, msg.command_code)}: {exc!r}")
            return self.base.error_answer(msg, d.DIAMETER_UNABLE_TO_COMPLY, f"test double error: {exc!r}"), False

    def _dispatch(self, conn: Connection, msg: d.Message) -> tuple[d.Message | None, bool]:
        if msg.application_id == 0:
            if msg.command_code == d.CMD_CAPABILITIES_EXCHANGE:
                if msg.find(d.AVP_HOST_IP_ADDRESS) is None:
                    # RFC 6733 5.3.1: Host-IP-Address is required in a CER. freeDiameter (open5gs'
                    # HSS and PCRF) refuses such a CER ("Conflicting rule"); so does the double.
                    # Not a failure of the double: recorded for tests to see, and the peer retries.
                    peer = msg.str_of(d.AVP_ORIGIN_HOST)
                    self._log(logging.WARNING, "CER from %s without Host-IP-Address: refused (5005)", peer)
                    with self._changed:
                        self.refused_cers.append(peer or "")
                        self._changed.notify_all()
                    missing = d.Avp.address(d.AVP_HOST_IP_ADDRESS, "0.0.0.0")
                    return self.base.error_answer(msg, d.DIAMETER_MISSING_AVP, "Host-IP-Address missing", missing), True
                cea, ok = self.base.cea(msg, conn.sock.getsockname()[0])
                with self._changed:
                    conn.peer_host = msg.str_of(d.AVP_ORIGIN_HOST)
                    conn.peer_realm = msg.str_of(d.AVP_ORIGIN_REALM)
                    conn.open = ok
                    self._changed.notify_all()
                if not ok:
                    self._error(
                        f"CER from {conn.peer_host} without {self.application.name} application: no common application"
                    )
                self._log(logging.INFO, "CER from %s -> %s", conn.peer_host, cea.result_code)
                return cea, not ok
            if msg.command_code == d.CMD_DEVICE_WATCHDOG:
                return self.base.dwa(msg), False
            if msg.command_code == d.CMD_DISCONNECT_PEER:
                with self._changed:
                    conn.open = False
                    self._changed.notify_all()
                return self.base.dpa(msg), False  # the DPR sender closes (RFC 6733 5.4)
            return self.base.error_answer(msg, d.DIAMETER_COMMAND_UNSUPPORTED), False
        if msg.application_id != self.application.id:
            return self.base.error_answer(msg, d.DIAMETER_APPLICATION_UNSUPPORTED), False
        return self._application_request(conn, msg), False

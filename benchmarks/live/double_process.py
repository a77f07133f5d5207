"""A Diameter test double in a process of its own, for the benchmarks.

In the live tier the Cx HSS and Rx PCRF doubles are threads of the pytest process, sharing
one interpreter lock with each other and with everything else the process does. Under load
that lock, not the double's work, set their answer times (cdp logged Cx answers 0.5-1 s
late while the double's threads used a fifth of a core). Here each double runs in its own
forked process inside the test namespace, so it gets a core of its own to use; the benchmark
reads its CPU by PID. The double itself is unchanged (tests/doubles/), and so is what it
answers.

The parent keeps the small part of the double's interface the live fixtures use:
`wait_for_peer`, `clear_requests`, `errors`, `take_errors`, `stop`, and `pid`.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from typing import Any

from tests.netns import NetNamespace


def _serve(factory: Callable[[], Any], ns: NetNamespace, conn) -> None:
    double = factory()
    with ns.entered():
        double.start()
    conn.send(("started", None))
    while True:
        command, args = conn.recv()
        try:
            if command == "wait_for_peer":
                conn.send(("ok", double.wait_for_peer(*args)))
            elif command == "clear_requests":
                double.clear_requests()
                conn.send(("ok", None))
            elif command == "errors":
                conn.send(("ok", list(double.errors)))
            elif command == "take_errors":
                conn.send(("ok", double.take_errors()))
            elif command == "stop":
                double.stop()
                conn.send(("ok", None))
                return
        except Exception as exc:  # noqa: BLE001 - handed to the parent, which raises it
            conn.send(("error", repr(exc)))


class DoubleProcess:
    def __init__(self, factory: Callable[[], Any], ns: NetNamespace):
        ctx = multiprocessing.get_context("fork")
        self._conn, child = ctx.Pipe()
        self._process = ctx.Process(target=_serve, args=(factory, ns, child), daemon=True)

    @property
    def pid(self) -> int:
        return self._process.pid

    def start(self) -> DoubleProcess:
        self._process.start()
        if not self._conn.poll(15):
            raise RuntimeError("test double process did not start")
        self._conn.recv()
        return self

    def _call(self, command: str, *args: Any, timeout: float = 30.0) -> Any:
        self._conn.send((command, args))
        if not self._conn.poll(timeout):
            raise TimeoutError(f"test double process: no answer to {command}")
        status, value = self._conn.recv()
        if status == "error":
            raise RuntimeError(f"test double process: {command}: {value}")
        return value

    def wait_for_peer(self, origin_host: str | None = None, timeout: float = 10.0) -> str:
        return self._call("wait_for_peer", origin_host, timeout, timeout=timeout + 5)

    def clear_requests(self) -> None:
        self._call("clear_requests")

    @property
    def errors(self) -> list[str]:
        return self._call("errors")

    def take_errors(self) -> list[str]:
        """Return and forget the double's failures so far (the live tier's error check calls it)."""
        return self._call("take_errors")

    def stop(self) -> None:
        if self._process.is_alive():
            try:
                self._call("stop")
            finally:
                self._process.join(10)
                if self._process.is_alive():
                    self._process.kill()
                    self._process.join()

"""A small client for rtpengine's NG control protocol (bencode over UDP), as Kamailio speaks it."""

from __future__ import annotations

import os
import socket
from typing import Any


def bencode(value: Any) -> bytes:
    if isinstance(value, bool):
        raise TypeError("bencode has no booleans")
    if isinstance(value, int):
        return b"i%de" % value
    if isinstance(value, str):
        value = value.encode()
    if isinstance(value, bytes):
        return b"%d:%s" % (len(value), value)
    if isinstance(value, list | tuple):
        return b"l" + b"".join(bencode(v) for v in value) + b"e"
    if isinstance(value, dict):
        return b"d" + b"".join(bencode(k) + bencode(value[k]) for k in sorted(value)) + b"e"
    raise TypeError(f"cannot bencode {type(value).__name__}")


def bdecode(data: bytes) -> Any:
    value, end = _decode(data, 0)
    if end != len(data):
        raise ValueError(f"trailing bytes after bencoded value at {end}")
    return value


def _decode(data: bytes, i: int) -> tuple[Any, int]:
    kind = data[i : i + 1]
    if kind == b"i":
        end = data.index(b"e", i)
        return int(data[i + 1 : end]), end + 1
    if kind in (b"l", b"d"):
        i += 1
        items = []
        while data[i : i + 1] != b"e":
            item, i = _decode(data, i)
            items.append(item)
        if kind == b"l":
            return items, i + 1
        return dict(zip(items[::2], items[1::2], strict=True)), i + 1
    colon = data.index(b":", i)
    length = int(data[i:colon])
    raw = data[colon + 1 : colon + 1 + length]
    try:
        return raw.decode(), colon + 1 + length
    except UnicodeDecodeError:
        return raw, colon + 1 + length


class NgClient:
    """`ng.command("offer", **{"call-id": ...})` -> the decoded reply dictionary."""

    def __init__(self, host: str, port: int, timeout: float = 3.0):
        self.address = (host, port)
        self.timeout = timeout

    def command(self, command: str, *, cookie: bytes | None = None, **arguments: Any) -> dict[str, Any]:
        """One command from a new socket (a new source port); `cookie` as a given client would tag it."""
        cookie = cookie or os.urandom(6).hex().encode()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(self.timeout)
            sock.sendto(cookie + b" " + bencode({"command": command, **arguments}), self.address)
            while True:
                data = sock.recv(65535)
                got, _, body = data.partition(b" ")
                if got == cookie:
                    return bdecode(body)

    def ping(self) -> str:
        return self.command("ping").get("result", "")


def from_kamailio_flags(flags: list[str]) -> dict[str, Any]:
    """NG arguments for a Kamailio rtpengine_offer/answer flags string, as its module builds them.

    The module turns `replace-X` into the `replace` list; other words (e.g. codec-transcode-PCMA)
    go to rtpengine in the `flags` list, which rtpengine itself parses.
    """
    replace = [f.removeprefix("replace-") for f in flags if f.startswith("replace-")]
    rest = [f for f in flags if not f.startswith("replace-")]
    return {**({"replace": replace} if replace else {}), **({"flags": rest} if rest else {})}

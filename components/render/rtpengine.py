"""rtpengine media relay configuration (userspace forwarding), rendered from settings."""

from __future__ import annotations

from ..settings import Settings

NG_PORT = 2223
PORT_MIN = 30000
PORT_MAX = 30999


def render(settings: Settings, *, interface: str = "0.0.0.0", advertised: str | None = None) -> dict[str, str]:
    """rtpengine.conf. `advertised` is the address UEs send media to (SDP c= line)."""
    iface = f"{interface}!{advertised}" if advertised else interface
    ng = settings.nf("rtpengine").address or "0.0.0.0"
    return {
        "rtpengine.conf": "\n".join(
            [
                "[rtpengine]",
                # -1: no kernel forwarding table; userspace relay works without xt_RTPENGINE.
                "table = -1",
                f"interface = {iface}",
                f"listen-ng = {ng}:{NG_PORT}",
                f"port-min = {PORT_MIN}",
                f"port-max = {PORT_MAX}",
                "foreground = true",
                "log-stderr = true",
                "log-level = 6",
                "",
            ]
        )
    }

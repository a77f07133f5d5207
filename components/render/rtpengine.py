"""rtpengine media relay: its config file, command line and the NG flags the P-CSCF sends.

The config file holds everything that does not depend on where the pod lands: userspace
forwarding, port range, timeouts, logging. The two addresses that do (the one media and NG
are bound to, the one written into SDP) are given on the command line by `daemon_args`, which
the Deployment fills from the downward API and the live test fills with the loopback profile's
address. Both run the same rendered file.

Kernel forwarding: `table = -1` keeps rtpengine in userspace, so no xt_RTPENGINE module, no
iptables rule and no NET_ADMIN are needed. A kernel table (table >= 0) on a node without the
module is not fatal: rtpengine 10.5 logs "FAILED TO CREATE KERNEL TABLE 0 (No such file or
directory), KERNEL FORWARDING DISABLED" and relays in userspace (it only exits with
`no-fallback`). The keys used here exist unchanged in rtpengine 10.5 (Debian, tests),
11.5 (Ubuntu 24.04 image) and 12.2 (Alpine image).
"""

from __future__ import annotations

from ..settings import Settings

NG_PORT = 2223
CONFIG_DIR = "/etc/rtpengine"
CONFIG_FILE = "rtpengine.conf"
SECTION = "rtpengine"
# Seconds without RTP before rtpengine drops a call (held calls: silent-timeout).
RTP_TIMEOUT = 60
SILENT_TIMEOUT = 3600


def render(settings: Settings) -> dict[str, str]:
    """Files of /etc/rtpengine: rtpengine.conf."""
    media = settings.media
    lines = [
        f"[{SECTION}]",
        "# Userspace relay: no kernel module, no iptables rule, no privilege.",
        "table = -1",
        f"port-min = {media.port_min}",
        f"port-max = {media.port_max}",
        f"timeout = {RTP_TIMEOUT}",
        f"silent-timeout = {SILENT_TIMEOUT}",
        "# Free a call's ports when the P-CSCF deletes it (at BYE), not 30 s later.",
        "delete-delay = 0",
        "foreground = true",
        "log-stderr = true",
        "log-level = 6",
        "",
    ]
    return {CONFIG_FILE: "\n".join(lines)}


def interface(bind: str, advertise: str | None = None) -> str:
    """rtpengine's `interface` value: media bound to `bind`, SDP showing `advertise` if given."""
    return f"{bind}!{advertise}" if advertise and advertise != bind else bind


def daemon_args(bind: str, advertise: str | None = None, *, config_dir: str = CONFIG_DIR) -> list[str]:
    """Arguments after the rtpengine binary: the rendered file plus the two placed addresses."""
    return [
        f"--config-file={config_dir}/{CONFIG_FILE}",
        f"--config-section={SECTION}",
        f"--interface={interface(bind, advertise)}",
        f"--listen-ng={bind}:{NG_PORT}",
    ]


def offer_flags(settings: Settings) -> list[str]:
    """NG flags for the P-CSCF's rtpengine_offer/answer: anchor media and, on ubuntu, transcode.

    `replace-origin`/`replace-session-connection` put rtpengine's address in o= and c=, so both
    UEs send media to rtpengine; `codec-transcode-X` adds codec X to the SDP and transcodes to it.
    """
    return [
        "replace-origin",
        "replace-session-connection",
        *(f"codec-transcode-{codec}" for codec in settings.media.transcoding_codecs),
    ]

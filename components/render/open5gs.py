"""open5gs HSS, PCRF and PGW (SMF as PGW-C, UPF as PGW-U): configuration rendered from settings.

Pure functions settings -> files, shared by the components and the tests:
- `hss.yaml`, `pcrf.yaml`, `smf.yaml`, `upf.yaml` (open5gs 2.7 format). None holds a password:
  the MongoDB URI with its password reaches hssd and pcrfd through the DB_URI environment
  variable, from a Kubernetes Secret (open5gs reads DB_URI after the YAML).
- freeDiameter `.conf` files for the HSS, PCRF and SMF (the `.conf` form, not open5gs' inline
  mapping, which takes numeric addresses only). freeDiameter refuses a peer it does not know, so
  every Kamailio peer is a `ConnectPeer` whose name is that CSCF's Origin-Host. Without a fixed
  address there is no `ConnectTo`: freeDiameter then resolves the peer's Diameter identity, which
  the IMS DNS publishes (the open5gs pods resolve through it, like the CSCFs), so pod and Service
  address changes need no re-render. Debian's freeDiameter 1.2.1 never connected to a DNS name
  given as `ConnectTo`; it did connect through the identity. No `ListenOn`: freeDiameter
  advertises the pod's own (non-loopback) addresses. The HSS and PCRF connect to the CSCFs
  too; the CSCFs' readiness does not wait for that (their own cdp connects to the HSS/PCRF
  Service, and cdp 6.0 never sends a CER without Host-IP-Address, which freeDiameter refuses).
- `subscribers.json`: the declared subscribers for the provisioning Job (a Secret: K and OPc).
- `upf-tun.sh`: the UPF's TUN devices, addresses and NAT, run by its init container.

Every port, identity, realm and application id comes from one place (components.settings and
the Kamailio renderer's constants), so the consistency tests compare both sides.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from .. import ifc as ifc_config
from ..settings import ROOT, Settings
from . import kamailio as render_kamailio

CONFIG_DIR = "/etc/open5gs"
FREEDIAMETER_DIR = f"{CONFIG_DIR}/freeDiameter"
# Where the image (meson --prefix=/usr --libdir=lib) and Debian's freediameter-extensions both
# install the freeDiameter extensions.
EXTENSION_DIR = "/usr/lib/freeDiameter"
# Dictionaries open5gs' Diameter applications need beside its built-in Cx, Rx, Gx and S6a.
DICTIONARIES = ("dict_rfc5777", "dict_mip6i", "dict_nasreq", "dict_nas_mipv6", "dict_dcca", "dict_dcca_3gpp")

DIAMETER_PORT = render_kamailio.DIAMETER_PORT
VENDOR_3GPP = render_kamailio.VENDOR_3GPP
CX_APPLICATION = render_kamailio.CX_APPLICATION
RX_APPLICATION = render_kamailio.RX_APPLICATION
GX_APPLICATION = 16777238
MONGODB_PORT = 27017
MONGODB_DATABASE = "open5gs"
MONGODB_USER = "open5gs"
# SMF and UPF share the PGW pod: PFCP (N4/Sxb) between them over the pod's loopback.
SMF_PFCP_ADDRESS = "127.0.0.4"
UPF_PFCP_ADDRESS = "127.0.0.7"
PFCP_PORT = 8805
GTPC_PORT = 2123
GTPU_PORT = 2152
# One TUN device per APN: NAT for internet, routed (no NAT) for ims.
TUN_DEVICES = {"internet": "ogstun", "ims": "ogstun2"}
NAT_APNS = ("internet",)
# The UPF runs as this user; the TUN devices are created owned by it, so it needs no capability.
UPF_UID = 65532

# Which Kamailio roles are Diameter peers of which open5gs NF, with the application.
DIAMETER_PEERS = {
    "hss": (("icscf", CX_APPLICATION), ("scscf", CX_APPLICATION)),
    "pcrf": (("pcscf", RX_APPLICATION), ("pgw", GX_APPLICATION)),
    "smf": (("pcrf", GX_APPLICATION),),
}
SHIPPED = ROOT / "config" / "open5gs"
PROVISION_SCRIPT = "provision.py"


def mongodb_uri(settings: Settings, password: str) -> str:
    host = f"mongodb.{settings.namespace}.svc.cluster.local"
    return f"mongodb://{MONGODB_USER}:{password}@{host}:{MONGODB_PORT}/{MONGODB_DATABASE}?authSource=admin"


def diameter_peers(settings: Settings, nf: str) -> list[tuple[str, str | None]]:
    """(Diameter identity, fixed address or None) of the peers of the HSS, PCRF or SMF (no P-CSCF if Rx is off)."""
    peers = []
    for role, _app in DIAMETER_PEERS.get(nf, ()):
        if role == "pcscf" and not settings.pcscf_rx:
            continue
        peers.append((settings.nf(role).fqdn, settings.nf(role).address))
    return peers


def freediameter_conf(settings: Settings, nf: str, *, extension_dir: str = EXTENSION_DIR) -> str:
    """freeDiameter configuration of the HSS, PCRF or SMF (Gx towards the PCRF)."""
    me = settings.nf("pgw" if nf == "smf" else nf)
    lines = [
        f"# Rendered from the stack settings for the {nf} (stack {settings.stack}); do not edit.",
        f'Identity = "{me.fqdn}";',
        f'Realm = "{me.realm}";',
        f"Port = {DIAMETER_PORT};",
        # No TLS credentials are configured: freeDiameter needs SecPort 0 then.
        "SecPort = 0;",
        # Diameter over TCP only: freeDiameter opens an SCTP server by default and stops when
        # the kernel has no SCTP (seen on the test machines; many pod networks have none).
        "No_SCTP;",
        "NoRelay;",
        "TcTimer = 5;",
        "TwTimer = 30;",
    ]
    lines += [f'LoadExtension = "{extension_dir}/{name}.fdx";' for name in DICTIONARIES]
    for identity, address in diameter_peers(settings, nf):
        connect_to = f'ConnectTo = "{address}"; ' if address else ""
        lines.append(f'ConnectPeer = "{identity}" {{ {connect_to}Port = {DIAMETER_PORT}; No_TLS; No_SCTP; }};')
    return "\n".join(lines) + "\n"


def _logger() -> dict:
    return {"level": "info"}


def hss_yaml(settings: Settings) -> str:
    return yaml.safe_dump(
        {
            "logger": _logger(),
            "global": {"max": {"ue": 1024}},
            "hss": {"freeDiameter": f"{FREEDIAMETER_DIR}/hss.conf"},
        },
        sort_keys=False,
    )


def pcrf_yaml(settings: Settings) -> str:
    return yaml.safe_dump(
        {
            "logger": _logger(),
            "global": {"max": {"ue": 1024}},
            "pcrf": {"freeDiameter": f"{FREEDIAMETER_DIR}/pcrf.conf"},
        },
        sort_keys=False,
    )


def _sessions(settings: Settings, *, with_dev: bool) -> list[dict]:
    sessions = []
    for pool in settings.open5gs.ue_pools:
        session = {"subnet": pool.subnet, "gateway": pool.gateway, "dnn": pool.apn}
        if with_dev:
            session["dev"] = TUN_DEVICES[pool.apn]
        sessions.append(session)
    return sessions


def smf_yaml(settings: Settings, addresses: dict[str, str]) -> str:
    """SMF as PGW-C. `addresses`: the IMS DNS and P-CSCF addresses it hands to UEs (Outputs resolved)."""
    return yaml.safe_dump(
        {
            "logger": _logger(),
            "global": {"max": {"ue": 1024}},
            "smf": {
                "pfcp": {
                    "server": [{"address": SMF_PFCP_ADDRESS}],
                    "client": {"upf": [{"address": UPF_PFCP_ADDRESS}]},
                },
                "gtpc": {"server": [{"dev": "eth0"}]},
                "gtpu": {"server": [{"dev": "eth0"}]},
                "session": _sessions(settings, with_dev=False),
                "dns": [addresses["coredns"]],
                "mtu": settings.open5gs.mtu,
                "p-cscf": [addresses["pcscf"]],
                # Gy is CGRateS' business through the S-CSCF (Ro), not the PGW's.
                "ctf": {"enabled": "no"},
                "freeDiameter": f"{FREEDIAMETER_DIR}/smf.conf",
            },
        },
        sort_keys=False,
    )


def upf_yaml(settings: Settings) -> str:
    return yaml.safe_dump(
        {
            "logger": _logger(),
            "global": {"max": {"ue": 1024}},
            "upf": {
                "pfcp": {
                    "server": [{"address": UPF_PFCP_ADDRESS}],
                    "client": {"smf": [{"address": SMF_PFCP_ADDRESS}]},
                },
                "gtpu": {"server": [{"dev": "eth0"}]},
                "session": _sessions(settings, with_dev=True),
            },
        },
        sort_keys=False,
    )


def upf_tun_script(settings: Settings) -> str:
    """Init container script (root, NET_ADMIN only): the TUN devices open5gs' UPF attaches to,
    owned by the UPF's user, addressed and up; NAT for the internet APN only, so the P-CSCF
    and rtpengine see the UE's own address on ims."""
    lines = [
        "#!/bin/sh",
        "# Rendered from the stack settings; do not edit.",
        "set -eu",
        # ip_forward is per network namespace; a pod's is inherited from the node at creation,
        # and every CNI needs it on. Say so in one look rather than drop packets silently.
        'if [ "$(cat /proc/sys/net/ipv4/ip_forward)" != 1 ]; then',
        '  echo "net.ipv4.ip_forward is 0 in the PGW pod: the UPF cannot route UE traffic; enable it on the node" >&2',
        "  exit 1",
        "fi",
    ]
    for pool in settings.open5gs.ue_pools:
        dev = TUN_DEVICES[pool.apn]
        prefix = pool.subnet.split("/")[1]
        lines += [
            f"ip link show {dev} >/dev/null 2>&1 || ip tuntap add name {dev} mode tun user {UPF_UID}",
            f"ip addr replace {pool.gateway}/{prefix} dev {dev}",
            f"ip link set {dev} up",
        ]
        if pool.apn in NAT_APNS:
            rule = f"POSTROUTING -s {pool.subnet} ! -o {dev} -j MASQUERADE"
            lines.append(f"iptables -t nat -C {rule} 2>/dev/null || iptables -t nat -A {rule}")
    return "\n".join(lines) + "\n"


def subscribers_json(settings: Settings) -> str:
    """The declared subscribers, as the provisioning script reads them (goes into a Secret)."""
    subs = settings.open5gs.subscribers if settings.open5gs else ()
    return json.dumps(
        {
            "stack": settings.stack,
            "subscribers": [
                {
                    "imsi": s.imsi,
                    "msisdn": s.msisdn,
                    "k": s.k,
                    "opc": s.opc,
                    "amf": s.amf,
                    "apns": list(s.apns),
                    "ambr": {
                        "uplink": [s.ambr_uplink.value, s.ambr_uplink.unit],
                        "downlink": [s.ambr_downlink.value, s.ambr_downlink.unit],
                    },
                    "ifcs": ifc_config.as_json(s.ifcs),
                }
                for s in subs
            ],
        },
        indent=2,
        sort_keys=True,
    )


def provision_script() -> str:
    return (SHIPPED / PROVISION_SCRIPT).read_text(encoding="utf-8")


def render(settings: Settings, addresses: dict[str, str]) -> dict[str, dict[str, str]]:
    """Files per NF: {"hss": {...}, "pcrf": {...}, "pgw": {...}}, keyed by path under /etc/open5gs."""
    if settings.open5gs is None:
        raise ValueError("open5gs is off in these settings")
    return {
        "hss": {"hss.yaml": hss_yaml(settings), "freeDiameter/hss.conf": freediameter_conf(settings, "hss")},
        "pcrf": {"pcrf.yaml": pcrf_yaml(settings), "freeDiameter/pcrf.conf": freediameter_conf(settings, "pcrf")},
        "pgw": {
            "smf.yaml": smf_yaml(settings, addresses),
            "upf.yaml": upf_yaml(settings),
            "freeDiameter/smf.conf": freediameter_conf(settings, "smf"),
            "upf-tun.sh": upf_tun_script(settings),
        },
    }


def shipped_paths() -> list[Path]:
    return sorted(p for p in SHIPPED.rglob("*") if p.is_file())

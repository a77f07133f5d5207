"""Kamailio P-CSCF, I-CSCF and S-CSCF configuration, rendered from settings.

The shipped configuration lives under config/kamailio/: one static `kamailio.cfg` per role,
routes split by concern under `route/`, and the db_redis table schemas. This module adds the
only environment-specific parts: a small `defines.cfg` (names, addresses, ports, feature
switches), the Diameter peer file `diameter.xml` (cdp), and `secrets.cfg` with the Valkey URL,
which holds the password and therefore goes to a Kubernetes Secret, never to a ConfigMap.

Every file is keyed by its path relative to the config directory (/etc/kamailio in the image).
`icscf_seed` gives the Valkey rows the I-CSCF reads (S-CSCF list, capabilities, trusted
domains), written by the I-CSCF pod's init container and loaded the same way by the live tier.
"""

from __future__ import annotations

from pathlib import Path
from xml.sax.saxutils import quoteattr

from ..interfaces import VALKEY_PORT, uses
from ..settings import CSCF_ROLES, ROOT, Settings
from . import rtpengine as render_rtpengine

SIP_PORT = 5060
# P-CSCF Mw socket: the only port the core (I-/S-CSCF) reaches the P-CSCF on. The Path the
# P-CSCF inserts points here, so mobile-terminating requests arrive on it; on Kubernetes a
# NetworkPolicy admits it only from the CSCF pods, while SIP_PORT (Gm) is open to UEs.
MW_PORT = 6060
DIAMETER_PORT = 3868
# ims_ipsec_pcscf: protected client and server ports towards the UE. The module opens
# IPSEC_PORT_PAIRS of each (ipsec_max_connections: 5100-5103 and 6100-6103) and hands the pairs
# out to UEs, sharing them once all are in use (the SAs name the UE's address too). Every one
# of them is a container port, a Service port and in the NetworkPolicy (`ipsec_ports`).
IPSEC_CLIENT_PORT = 5100
IPSEC_SERVER_PORT = 6100
IPSEC_PORT_PAIRS = 4
# The pod's own address (downward API, status.podIP): the SAs and the protected sockets are
# bound to it, since an SA for 0.0.0.0 matches no packet; without a fixed pcscfAddress the Rx
# signalling flows name it too.
POD_IP_ENV = "POD_IP"

CONFIG_DIR = "/etc/kamailio"
# The ctl module's binrpc socket, as kamailio.cfg defines it unless defines.cfg overrides it.
CTL_SOCKET = "unix:/run/kamailio/kamailio_ctl"
# Where the image installs the readiness probe (dockerfiles/kamailio/cscf-ready-probe).
READY_PROBE = "/usr/local/bin/cscf-ready-probe"
SHIPPED = ROOT / "config" / "kamailio"
SECRETS_FILE = "secrets.cfg"

# Diameter applications (3GPP vendor 10415): Cx towards the HSS, Rx towards the PCRF.
VENDOR_3GPP = 10415
CX_APPLICATION = 16777216
RX_APPLICATION = 16777236
# Ro (TS 32.299) is the Diameter Credit-Control application, RFC 4006: application 4.
RO_APPLICATION = 4

# db_redis schemas each role reads (config/kamailio/db_redis/<table>).
DB_TABLES = {
    "pcscf": ("location",),
    "icscf": ("nds_trusted_domains", "s_cscf", "s_cscf_capabilities"),
    "scscf": (),
}


def _check_role(role: str) -> None:
    if role not in CSCF_ROLES:
        raise ValueError(f"role {role!r}: must be one of {', '.join(CSCF_ROLES)}")


def _shipped(role: str) -> dict[str, str]:
    base = SHIPPED / role
    return {
        path.relative_to(base).as_posix(): path.read_text(encoding="utf-8")
        for path in sorted(base.rglob("*.cfg"))
    }


def _host(settings: Settings, name: str) -> str:
    """How a peer is reached: its fixed address if it has one, else its FQDN."""
    nf = settings.nf(name)
    return nf.address or nf.fqdn


def defines(settings: Settings, role: str, *, config_dir: str = CONFIG_DIR, bind_address: bool = False) -> str:
    """The rendered `defines.cfg`: the only environment values the shipped cfg reads.

    In Kubernetes (`bind_address` false) Kamailio listens on every pod address and advertises
    the Service's fixed address or, without one, its FQDN (which must then resolve when
    Kamailio starts). With `bind_address` (the loopback profile of the live tests) it binds
    the NF's own address, so the three roles can share one host.
    """
    _check_role(role)
    nf = settings.nf(role)
    if bind_address and not nf.address:
        raise ValueError(f"{role}: bind_address needs a fixed {role}Address")
    lines = [
        f"# Rendered from the stack settings for the {role} (stack {settings.stack}); do not edit.",
        f'#!define ROLE "{role}"',
        f"#!substdef \"!MY_FQDN!{nf.fqdn}!g\"",
        f"#!substdef \"!IMS_DOMAIN!{settings.ims_domain}!g\"",
        f"#!substdef \"!CFG_DIR!{config_dir}!g\"",
        f"#!substdef \"!SIP_PORT!{SIP_PORT}!g\"",
    ]
    if bind_address:
        lines.append(f"#!define LISTEN_ADDRESS {nf.address}")
        # Several roles on one host: each keeps its control socket beside its config.
        lines.append(f'#!define CTL_SOCKET "unix:{config_dir}/kamailio_ctl"')
    else:
        lines.append("#!define LISTEN_ADDRESS 0.0.0.0")
        lines.append(f"#!define ADVERTISED_HOST {nf.address or nf.fqdn}")

    if settings.kamailio:
        lines.append(f"#!define CHILDREN {settings.kamailio[role].workers}")
    if role == "pcscf" and settings.overload is not None:
        lines.append(f"#!define OVERLOAD_REGISTER_RATE {settings.overload.register_rate}")
        lines.append(f"#!define OVERLOAD_PENDING_LIMIT {settings.overload.pending_limit}")
    if settings.overload is not None:
        lines.append(f"#!define OVERLOAD_RETRY_AFTER {settings.overload.retry_after}")
    if settings.kamailio:
        # Every CSCF sheds new work before its shared pool runs out (route/overload.cfg).
        lines.append(f"#!define OVERLOAD_SHM_FREE {settings.kamailio[role].shed_free_bytes()}")
    if role in ("icscf", "scscf"):
        lines.append(f"#!substdef \"!HSS_REALM!{settings.nf('hss').realm}!g\"")
    if role in ("pcscf", "scscf"):
        lines.append(f"#!substdef \"!ICSCF_FQDN!{settings.nf('icscf').fqdn}!g\"")
    if role == "scscf" and settings.charging.enabled:
        lines += _charging_defines(settings)
    if role == "pcscf":
        lines.append(f"#!substdef \"!MW_PORT!{MW_PORT}!g\"")
        lines.append(f'#!define RTPENGINE_SOCK "udp:{_host(settings, "rtpengine")}:{render_rtpengine.NG_PORT}"')
        # The rtpengine module's flags for offer/answer (media anchoring, transcoding).
        lines.append(f'#!define RTPENGINE_FLAGS "{" ".join(render_rtpengine.offer_flags(settings))}"')
        if settings.pcscf_ipsec:
            lines += [
                "#!define WITH_IPSEC",
                f"#!define IPSEC_CLIENT_PORT {IPSEC_CLIENT_PORT}",
                f"#!define IPSEC_SERVER_PORT {IPSEC_SERVER_PORT}",
                f"#!define IPSEC_MAX_CONNECTIONS {IPSEC_PORT_PAIRS}",
                f'#!define IPSEC_LISTEN_ADDRESS "{nf.address}"'
                if bind_address
                else f"#!defenvs IPSEC_LISTEN_ADDRESS={POD_IP_ENV}",
            ]
        if settings.pcscf_rx:
            lines += ["#!define WITH_RX", f"#!substdef \"!PCRF_REALM!{settings.nf('pcrf').realm}!g\""]
            # ims_qos af_signaling_ip: the P-CSCF's own address in the AF signalling flows of
            # the registration AAR (the module default, 127.0.0.1, would have the PCRF gate
            # the wrong flows): the fixed address, else the pod's, read when Kamailio starts.
            if nf.address:
                lines.append(f'#!define AF_SIGNALING_IP "{nf.address}"')
            else:
                lines.append(f"#!defenvs AF_SIGNALING_IP={POD_IP_ENV}")
    return "\n".join(lines) + "\n"


def _charging_defines(settings: Settings) -> list[str]:
    """ims_charging towards CGRateS: its peer, the Service-Context-Id parts, and what to do
    with a call when CGRateS cannot be asked."""
    cgrates = settings.nf("cgrates")
    lines = [
        "#!define WITH_CHARGING",
        f"#!substdef \"!CGRATES_FQDN!{cgrates.fqdn}!g\"",
        f"#!substdef \"!CGRATES_REALM!{cgrates.realm}!g\"",
        f'#!define RO_MCC "{settings.mcc}"',
        f'#!define RO_MNC "{settings.mnc}"',
    ]
    if settings.charging.when_unreachable == "allow":
        lines.append("#!define CHARGING_ALLOW_WHEN_UNREACHABLE")
    return lines


def ipsec_ports() -> list[tuple[str, int]]:
    """(name, port) of every protected port the P-CSCF opens: client ports, then server ports."""
    return [
        (f"ipsec-{side}{n}", base + n)
        for side, base in (("c", IPSEC_CLIENT_PORT), ("s", IPSEC_SERVER_PORT))
        for n in range(IPSEC_PORT_PAIRS)
    ]


def diameter_xml(settings: Settings, role: str, *, bind_address: bool = False) -> str | None:
    """cdp peer file: the I-/S-CSCF talk Cx to the HSS, the P-CSCF Rx to the PCRF (if on)."""
    _check_role(role)
    if role == "pcscf" and not settings.pcscf_rx:
        return None
    nf = settings.nf(role)
    peer_name, app = ("pcrf", RX_APPLICATION) if role == "pcscf" else ("hss", CX_APPLICATION)
    peer = settings.nf(peer_name)
    bind = f" bind={quoteattr(nf.address)}" if bind_address and nf.address else ""
    ro_peer, ro_app, routes = "", "", ""
    if role == "scscf" and settings.charging.enabled:
        # Ro to CGRateS, advertised as an Auth application only: CGRateS' Diameter library
        # refuses a CER that names application 4 as accounting (its dictionary says auth).
        cgrates = settings.nf("cgrates")
        ro_peer = f'\n\t<Peer FQDN={quoteattr(cgrates.fqdn)} Realm={quoteattr(cgrates.realm)} port="{DIAMETER_PORT}"/>'
        ro_app = f'\n\t<Auth id="{RO_APPLICATION}" vendor="0"/>\n\t<Auth id="{RO_APPLICATION}" vendor="{VENDOR_3GPP}"/>'
        routes = f'\n\t<Realm name={quoteattr(cgrates.realm)}>\n\t\t<Route FQDN={quoteattr(cgrates.fqdn)} metric="10"/>\n\t</Realm>'
        if cgrates.realm == peer.realm:
            raise ValueError(f"the CGRateS realm {cgrates.realm!r} must differ from the {peer_name} realm")
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<!-- Rendered from the stack settings for the {role}; do not edit. -->
<DiameterPeer
	FQDN={quoteattr(nf.fqdn)}
	Realm={quoteattr(nf.realm)}
	Vendor_Id="{VENDOR_3GPP}"
	Product_Name="ims-core"
	AcceptUnknownPeers="0"
	DropUnknownOnDisconnect="1"
	Tc="5"
	Workers="4"
	QueueLength="32"
	TransactionTimeout="5"
	SessionsHashSize="128"
	DefaultAuthSessionTimeout="3600"
	MaxAuthSessionTimeout="3600">

	<Peer FQDN={quoteattr(peer.fqdn)} Realm={quoteattr(peer.realm)} port="{DIAMETER_PORT}"/>{ro_peer}

	<Acceptor port="{DIAMETER_PORT}"{bind}/>

	<Auth id="{app}" vendor="{VENDOR_3GPP}"/>{ro_app}
	<SupportedVendor vendor="{VENDOR_3GPP}"/>
{routes}
	<DefaultRoute FQDN={quoteattr(peer.fqdn)} metric="10"/>
</DiameterPeer>
"""


def readiness_peers(settings: Settings, role: str) -> tuple[str, ...]:
    """Diameter identities a role must have an open connection with before it takes traffic:
    the HSS for the I-/S-CSCF (Cx), the PCRF for the P-CSCF when Rx is on. Not CGRateS: with
    Ro down `charging.whenUnreachable` decides per call, and an S-CSCF out of its Service
    would lose every registration's traffic instead."""
    _check_role(role)
    if role == "pcscf":
        return (settings.nf("pcrf").fqdn,) if settings.pcscf_rx else ()
    return (settings.nf("hss").fqdn,)


def readiness_command(settings: Settings, role: str, *, ctl_socket: str = CTL_SOCKET) -> list[str]:
    """The readiness probe's command (dockerfiles/kamailio/cscf-ready-probe): SIP OPTIONS to the
    pod's own Kamailio, then cdp's peer states over the ctl socket."""
    return [READY_PROBE, "127.0.0.1", str(SIP_PORT), ctl_socket, *readiness_peers(settings, role)]


def render(settings: Settings, role: str, *, config_dir: str = CONFIG_DIR, bind_address: bool = False) -> dict[str, str]:
    """Files of one role's config directory, keyed by path relative to /etc/kamailio.

    `config_dir` is where the files will live (the live and render tests use a temp dir);
    `bind_address` is for the loopback profile (see `defines`).
    """
    _check_role(role)
    files = _shipped(role)
    files["defines.cfg"] = defines(settings, role, config_dir=config_dir, bind_address=bind_address)
    xml = diameter_xml(settings, role, bind_address=bind_address)
    if xml is not None:
        files["diameter.xml"] = xml
    for table in DB_TABLES[role]:
        files[f"db_redis/kamailio/{table}"] = (SHIPPED / "db_redis" / table).read_text(encoding="utf-8")
    return files


def valkey_url(settings: Settings, role: str, valkey_password: str) -> str:
    db = settings.valkey_databases[role]
    return f"redis://:{valkey_password}@{_host(settings, 'valkey')}:{VALKEY_PORT}/{db}"


def render_secrets(settings: Settings, role: str, valkey_password: str) -> dict[str, str]:
    """Files with secrets (the Valkey URL with its password), projected beside kamailio.cfg;
    none for a role that is no Valkey client (least privilege: it never sees the password)."""
    _check_role(role)
    if not uses(role, "valkey"):
        return {}
    return {SECRETS_FILE: f'#!define VALKEY_URL "{valkey_url(settings, role, valkey_password)}"\n'}


def icscf_seed(settings: Settings) -> dict[str, dict[str, str]]:
    """Valkey rows of the I-CSCF tables, as {key: hash}; writing them twice changes nothing.

    db_redis keys a row `<table>:entry::<id>` (keys modparam `<table>=entry:id`). One
    S-CSCF, with no capabilities (the HSS then names it, or ims_icscf picks it anyway), and
    the home domain as the only trusted domain.
    """
    scscf = settings.nf("scscf")
    return {
        "s_cscf:entry::1": {"id": "1", "name": scscf.fqdn, "s_cscf_uri": f"sip:{scscf.fqdn}:{SIP_PORT}"},
        "s_cscf_capabilities:entry::1": {"id": "1", "id_s_cscf": "1", "capability": "0"},
        "nds_trusted_domains:entry::1": {"id": "1", "trusted_domain": settings.ims_domain},
    }


def icscf_seed_commands(settings: Settings) -> list[list[str]]:
    """`icscf_seed` as Redis commands (HSET key field value ...), e.g. for valkey-cli."""
    commands = []
    for key, row in icscf_seed(settings).items():
        command = ["HSET", key]
        for field, value in row.items():
            command += [field, value]
        commands.append(command)
    return commands


def icscf_seed_script(settings: Settings) -> str:
    """`icscf_seed_commands` as valkey-cli input, one quoted command a line: what the I-CSCF
    pod's init container pipes into valkey-cli, and what the live tier loads."""
    return "".join(" ".join(f'"{word}"' for word in command) + "\n" for command in icscf_seed_commands(settings))


def shipped_paths() -> list[Path]:
    """Every shipped file (for image builds and change detection)."""
    return sorted(p for p in SHIPPED.rglob("*") if p.is_file())

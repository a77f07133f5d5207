"""Stack settings: one typed, validated, immutable object built once from stack config.

Defaults and types come from the `config:` schema in Pulumi.yaml (the one place defaults live),
so the values are the same under the real CLI and under unit-test mocks, where the CLI does
not apply them. Every bad value is reported at once, naming the key, the value and what is
allowed; the caller then registers no resource at all.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from . import subscribers as subscriber_config
from .charging import Charging, parse_charging
from .sizing import KamailioSizing, Overload, kamailio_sizing, overload

PROJECT = "ims-core"
ROOT = Path(__file__).resolve().parent.parent
SCHEMA_PATH = ROOT / "Pulumi.yaml"

# Network functions this stack always deploys; the open5gs ones (HSS, PCRF, PGW) with
# `open5gs: true`, otherwise the HSS and PCRF are external peers at hssAddress/pcrfAddress.
DEPLOYED_NFS = ("pcscf", "icscf", "scscf", "valkey", "coredns", "rtpengine")
# Deployed only when their setting says so: CGRateS with `charging.enabled`.
OPTIONAL_NFS = ("cgrates",)
EXTERNAL_PEERS = ("hss", "pcrf")
OPEN5GS_NFS = ("hss", "pcrf", "pgw")
CSCF_ROLES = ("pcscf", "icscf", "scscf")
# Which domain each NF's FQDN (and Diameter realm) lives in.
EPC_NFS = frozenset({"hss", "pcrf", "pgw"})

RTPENGINE_VARIANTS = ("alpine", "ubuntu")
RTPENGINE_MEDIA_EXPOSURES = ("hostNetwork", "hostPort")
# How UEs reach the P-CSCF on Gm (pcscfGmExposure); IPsec needs one that ESP can traverse.
PCSCF_GM_EXPOSURES = ("service", "hostNetwork")
# Every hostPort is one entry in the pod spec and one DNAT rule on the node: keep the list short.
RTPENGINE_MAX_HOST_PORTS = 200
# Kubernetes' default NodePort range: kube-proxy may hold these ports on every node.
NODEPORT_RANGE = (30000, 32767)
# Codecs the ubuntu image can encode as well as decode (rtpengine --codecs: "fully supported";
# AMR and AMR-WB encoders come from libavcodec-extra). Names as in SDP rtpmap.
RTPENGINE_TRANSCODING_CODECS = ("AMR", "AMR-WB", "PCMA", "PCMU", "G722", "G729", "opus", "speex", "GSM")
PLATFORMS = ("linux/amd64", "linux/arm64")
MAX_REPLICAS = 20
# NFs that keep per-call or per-registration state in the pod, or one Diameter identity: a
# second pod breaks calls, so at most one each (why, for the error message).
SINGLE_POD_NFS = MappingProxyType(
    {
        "pcscf": "UE contacts (lookups come from memory), dialogs and IPsec state live in each pod, so a UE "
        "registered on one pod cannot call or be called through another",
        "icscf": "every pod would open Cx to the HSS as the same Diameter peer (the I-CSCF FQDN), and a "
        "Diameter peer keeps one connection per identity",
        "scscf": "registrations live in each pod's memory (ims_usrloc_scscf cannot use Valkey), so calls "
        "reach a pod that never saw the callee register",
        "rtpengine": "the P-CSCF sends every NG command through the one rtpengine Service address, so the "
        "offer, answer and delete of one call can land on different pods",
    }
)
MIN_PASSWORD_LENGTH = 16
# Keys that must be set with `pulumi config set --secret` when set at all. Pulumi.yaml cannot mark
# them `secret: true`: a secret key may have no default, so the CLI would require it.
SECRET_KEYS = ("valkeyPassword", "mongodbPassword", "subscribers", "cgratesStorDbPassword")
# Valkey logical databases, one per client (components/interfaces.py says who the clients are),
# so no two clients' keys can collide. 2 was the S-CSCF's, which never used it: not reused.
VALKEY_DATABASES = MappingProxyType({"pcscf": 0, "icscf": 1, "cgrates": 3})

_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_CPU = re.compile(r"^([1-9][0-9]*m|[0-9]+(\.[0-9]+)?)$")
_MEMORY = re.compile(r"^[1-9][0-9]*(Ki|Mi|Gi|Ti|k|M|G|T)?$")
_REGISTRY = re.compile(r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[0-9]{1,5})?(/[a-z0-9]+([._-][a-z0-9]+)*)*$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_PINNED_IMAGE = re.compile(r"^[a-z0-9][a-z0-9./:_-]*(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}|@sha256:[0-9a-f]{64})$")


class SettingsError(ValueError):
    """Every problem found in the stack config, one line each."""

    def __init__(self, errors: list[str]):
        self.errors = list(errors)
        lines = "\n".join(f"  - {e}" for e in self.errors)
        super().__init__(f"invalid stack config ({len(self.errors)} problem(s)); nothing was created:\n{lines}")


@dataclass(frozen=True)
class Resources:
    cpu: str
    memory: str


@dataclass(frozen=True)
class NetworkFunction:
    """One NF as the rest of the network sees it."""

    name: str
    fqdn: str
    realm: str
    # Fixed IPv4 address, or None: the Service's ClusterIP (Kubernetes) decides.
    address: str | None
    replicas: int = 0
    resources: Resources | None = None

    @property
    def deployed(self) -> bool:
        return self.replicas > 0


@dataclass(frozen=True)
class Images:
    build: bool
    registry: str
    tag: str
    push: bool
    platform: str | None  # None: the building Docker engine's own (a local kind cluster runs there)
    valkey: str
    coredns: str
    mongodb: str = "docker.io/library/mongo:7.0.14"

    def reference(self, image: str) -> str:
        """Reference of one of our images, e.g. localhost:5001/ims-core/kamailio:0.1.0."""
        return f"{self.registry}/{image}:{self.tag}"


@dataclass(frozen=True)
class MediaRelay:
    """rtpengine: which image, how UEs reach its media ports, what it may transcode."""

    variant: str  # alpine | ubuntu
    exposure: str  # hostNetwork | hostPort
    port_min: int
    port_max: int
    # Address written into SDP; None: the node's own address (status.hostIP).
    advertise_address: str | None
    transcoding_codecs: tuple[str, ...]

    @property
    def port_count(self) -> int:
        return self.port_max - self.port_min + 1


@dataclass(frozen=True)
class PolicyPeers:
    """Who besides this stack's pods may reach the core (NetworkPolicy sources): namespaces
    (every pod in them) and IPv4 source ranges, per protocol."""

    sip_namespaces: tuple[str, ...] = ()
    sip_cidrs: tuple[str, ...] = ()
    diameter_namespaces: tuple[str, ...] = ()
    diameter_cidrs: tuple[str, ...] = ()


@dataclass(frozen=True)
class CgratesDeployment:
    """How CGRateS runs: the StorDB (PostgreSQL, CDRs) and the loader Job's images, volume size."""

    stordb_image: str
    loader_image: str
    stordb_storage: str


@dataclass(frozen=True)
class UePool:
    apn: str
    subnet: str  # e.g. 10.45.0.0/16
    gateway: str  # the UPF's address in it (the TUN device), the first host


@dataclass(frozen=True)
class Open5gs:
    """open5gs HSS, PCRF and PGW (SMF + UPF), their MongoDB and the declared subscribers."""

    ue_pools: tuple[UePool, ...]
    mtu: int
    mongodb_storage: str
    subscribers: tuple[subscriber_config.Subscriber, ...] = field(repr=False)
    # Plain str in tests, a secret pulumi.Output under the engine.
    mongodb_password: Any = field(default=None, repr=False, compare=False)

    def pool(self, apn: str) -> UePool:
        return next(p for p in self.ue_pools if p.apn == apn)


@dataclass(frozen=True)
class Settings:
    stack: str
    namespace: str
    kubeconfig: str
    kube_context: str
    mcc: str
    mnc: str  # always 3 digits
    ims_domain: str
    epc_domain: str
    images: Images
    rtpengine_variant: str
    pcscf_ipsec: bool
    pcscf_rx: bool
    pcscf_gm_exposure: str  # service | hostNetwork
    valkey_storage: str
    nfs: Mapping[str, NetworkFunction]
    media: MediaRelay
    peers: PolicyPeers = field(default_factory=PolicyPeers)
    valkey_databases: Mapping[str, int] = field(default_factory=lambda: VALKEY_DATABASES)
    # Worker counts and memory pools per CSCF role; P-CSCF overload control (components/sizing.py).
    kamailio: Mapping[str, KamailioSizing] = field(default_factory=dict)
    overload: Overload | None = None
    # Online charging over Ro (CGRateS), tariffs and balances (components/charging.py).
    charging: Charging = field(default_factory=Charging)
    cgrates: CgratesDeployment | None = None
    # A plain str in tests, a secret pulumi.Output under the engine; never rendered into a ConfigMap.
    # None: not set, the stack generates one (components/password.py) and keeps it in its state.
    valkey_password: Any = field(default=None, repr=False, compare=False)
    # The CGRateS StorDB (PostgreSQL) password; required only with charging on.
    cgrates_stordb_password: Any = field(default=None, repr=False, compare=False)
    open5gs: Open5gs | None = None

    @property
    def deployed_nfs(self) -> tuple[str, ...]:
        return tuple(name for name, nf in self.nfs.items() if nf.deployed)

    def nf(self, name: str) -> NetworkFunction:
        return self.nfs[name]


# --- schema ------------------------------------------------------------------------------


def load_schema(path: Path = SCHEMA_PATH) -> dict[str, dict[str, Any]]:
    """The `config:` section of Pulumi.yaml: key -> {type, default, description, secret}."""
    with open(path, encoding="utf-8") as fh:
        project = yaml.safe_load(fh)
    return dict(project.get("config") or {})


def _strip_project(key: str) -> str:
    return key.split(":", 1)[1] if key.startswith(f"{PROJECT}:") else key


def _coerce(key: str, raw: Any, spec: Mapping[str, Any], errors: list[str]) -> Any:
    """Turn a raw config value (the CLI hands strings) into the schema's type."""
    kind = spec.get("type", "string")
    shown = "<secret>" if spec.get("secret") else repr(raw)
    if kind == "boolean":
        if isinstance(raw, bool):
            return raw
        if str(raw).lower() in ("true", "false"):
            return str(raw).lower() == "true"
        errors.append(f"{key} = {shown}: must be a boolean, true or false")
        return None
    if kind == "integer":
        if isinstance(raw, bool):
            errors.append(f"{key} = {shown}: must be a whole number")
            return None
        try:
            return int(str(raw).strip())
        except ValueError:
            errors.append(f"{key} = {shown}: must be a whole number")
            return None
    if kind == "array":
        if isinstance(raw, list | tuple):
            return list(raw)
        try:
            value = json.loads(raw)
        except (TypeError, ValueError):
            value = None
        if not isinstance(value, list):
            errors.append(f'{key} = {shown}: must be a list, e.g. ["a", "b"]')
            return None
        return value
    if kind == "object":
        if isinstance(raw, Mapping):
            return dict(raw)
        try:
            value = json.loads(raw)
        except (TypeError, ValueError):
            value = None
        if not isinstance(value, dict):
            errors.append(f"{key} = {shown}: must be a mapping (YAML object)")
            return None
        return value
    return "" if raw is None else str(raw)


def _resolve(values: Mapping[str, Any], schema: Mapping[str, Mapping[str, Any]], errors: list[str]) -> dict[str, Any]:
    given = {_strip_project(k): v for k, v in values.items() if ":" not in k or k.startswith(f"{PROJECT}:")}
    for key in sorted(set(given) - set(schema)):
        close = difflib.get_close_matches(key, list(schema), n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        errors.append(f"{key}: unknown setting{hint} (Pulumi.yaml declares every setting)")
    resolved: dict[str, Any] = {}
    for key, spec in schema.items():
        if key in given:
            resolved[key] = _coerce(key, given[key], spec, errors)
        elif "default" in spec:
            resolved[key] = spec["default"]
        else:
            resolved[key] = None
    return resolved


# --- validation helpers ------------------------------------------------------------------


def _check(ok: bool, errors: list[str], message: str) -> None:
    if not ok:
        errors.append(message)


def _valid_domain(name: str) -> bool:
    labels = name.split(".")
    return len(name) <= 253 and len(labels) >= 2 and all(_LABEL.match(label) for label in labels)


def _domain(key: str, value: str, derived: str, errors: list[str]) -> str:
    if value == "":
        return derived
    _check(
        _valid_domain(value),
        errors,
        f"{key} = {value!r}: must be a lowercase DNS name of two or more labels (a-z, 0-9, '-'), "
        f"e.g. {derived}; leave empty to derive it from mcc/mnc",
    )
    return value


def _address(key: str, value: str, errors: list[str]) -> str | None:
    if value == "":
        return None
    try:
        address = ipaddress.IPv4Address(value)
    except ValueError:
        errors.append(f"{key} = {value!r}: must be an IPv4 address such as 10.96.0.53, or empty")
        return None
    if address.is_unspecified or address.is_multicast or address == ipaddress.IPv4Address("255.255.255.255"):
        errors.append(
            f"{key} = {value!r}: must be a unicast IPv4 address (not 0.0.0.0, multicast or broadcast); "
            "the IMS DNS publishes it in an A record"
        )
        return None
    return value


def _zone_clashes(ims_domain: str, epc_domain: str, errors: list[str]) -> None:
    """One domain nested in the other must not be a name the outer zone publishes (it would hide it)."""
    zones = {"imsDomain": ims_domain, "epcDomain": epc_domain}
    for outer_key, outer in zones.items():
        labels = ["ns"] + [nf for nf in DEPLOYED_NFS + OPEN5GS_NFS + OPTIONAL_NFS if (nf in EPC_NFS) == (outer_key == "epcDomain")]
        for inner_key, inner in zones.items():
            hidden = [label for label in labels if inner == f"{label}.{outer}"]
            if inner_key != outer_key and hidden:
                errors.append(
                    f"{inner_key} = {inner!r}: is the FQDN of {hidden[0]} in {outer_key} {outer!r}, so its zone "
                    f"would hide that record; choose a domain that no NF name in {outer!r} uses"
                )


def _replicas(nf: str, value: Any, errors: list[str]) -> int:
    key = f"{nf}Replicas"
    if value is None:
        return 1
    if nf in SINGLE_POD_NFS:
        _check(value == 1, errors, f"{key} = {value}: must be 1; {SINGLE_POD_NFS[nf]}")
    else:
        _check(1 <= value <= MAX_REPLICAS, errors, f"{key} = {value}: must be between 1 and {MAX_REPLICAS}")
    return value


def _media_relay(v: Mapping[str, Any], variant: str, errors: list[str]) -> MediaRelay:
    exposure = v["rtpengineMediaExposure"] or ""
    _check(
        exposure in RTPENGINE_MEDIA_EXPOSURES,
        errors,
        f"rtpengineMediaExposure = {exposure!r}: must be one of {', '.join(RTPENGINE_MEDIA_EXPOSURES)}",
    )
    low, high = v["rtpenginePortMin"], v["rtpenginePortMax"]
    if isinstance(low, int) and isinstance(high, int):
        if not 1024 < low <= high <= 65535:
            errors.append(
                f"rtpenginePortMin = {low}, rtpenginePortMax = {high}: need 1024 < rtpenginePortMin <= rtpenginePortMax <= 65535"
            )
        elif high - low + 1 < 4:
            errors.append(
                f"rtpenginePortMin = {low}, rtpenginePortMax = {high}: one call needs 4 ports (RTP+RTCP, 2 legs)"
            )
        if low <= NODEPORT_RANGE[1] and high >= NODEPORT_RANGE[0]:
            errors.append(
                f"rtpenginePortMin = {low}, rtpenginePortMax = {high}: overlaps the Kubernetes NodePort range "
                f"{NODEPORT_RANGE[0]}-{NODEPORT_RANGE[1]}; choose ports outside it, e.g. 40000-40999"
            )
        if exposure == "hostPort" and high - low + 1 > RTPENGINE_MAX_HOST_PORTS:
            errors.append(
                f"rtpenginePortMin = {low}, rtpenginePortMax = {high}: {high - low + 1} ports with "
                f"rtpengineMediaExposure = hostPort; at most {RTPENGINE_MAX_HOST_PORTS} (each is a hostPort entry "
                "and a DNAT rule): narrow the range or use hostNetwork"
            )
    advertise = _address("rtpengineAdvertiseAddress", v["rtpengineAdvertiseAddress"] or "", errors)
    codecs = v["rtpengineTranscodingCodecs"]
    codecs = [] if codecs is None else codecs
    unknown = [c for c in codecs if c not in RTPENGINE_TRANSCODING_CODECS]
    if unknown:
        errors.append(
            f"rtpengineTranscodingCodecs = {codecs!r}: {', '.join(map(repr, unknown))} not supported; "
            f"allowed: {', '.join(RTPENGINE_TRANSCODING_CODECS)}"
        )
    if len(set(codecs)) != len(codecs):
        errors.append(f"rtpengineTranscodingCodecs = {codecs!r}: a codec is listed twice")
    if codecs and variant == "alpine":
        errors.append(
            f"rtpengineTranscodingCodecs = {codecs!r} with rtpengineVariant = 'alpine': the alpine image only "
            "relays media; set rtpengineVariant to ubuntu for transcoding, or leave rtpengineTranscodingCodecs empty"
        )
    return MediaRelay(
        variant=variant,
        exposure=exposure,
        port_min=low if isinstance(low, int) else 0,
        port_max=high if isinstance(high, int) else 0,
        advertise_address=advertise,
        transcoding_codecs=tuple(str(c) for c in codecs),
    )


def _namespaces(key: str, value: Any, errors: list[str]) -> tuple[str, ...]:
    names = [] if value is None else value
    bad = [n for n in names if not (isinstance(n, str) and _LABEL.match(n))]
    if bad:
        errors.append(
            f"{key} = {names!r}: {', '.join(map(repr, bad))} not a namespace name (DNS-1123 label: 1-63 lowercase "
            "letters, digits or '-')"
        )
    if len(set(map(str, names))) != len(names):
        errors.append(f"{key} = {names!r}: a namespace is listed twice")
    return tuple(str(n) for n in names)


def _cidrs(key: str, value: Any, errors: list[str]) -> tuple[str, ...]:
    ranges = [] if value is None else value
    for cidr in ranges:
        try:
            network = ipaddress.IPv4Network(str(cidr), strict=False)
        except ValueError:
            errors.append(f"{key} = {ranges!r}: {cidr!r} is not an IPv4 range such as 192.0.2.0/24 or 192.0.2.7/32")
            continue
        if str(network) != str(cidr):
            errors.append(f"{key} = {ranges!r}: {cidr!r} has host bits set or no prefix length; write {str(network)!r}")
    return tuple(str(c) for c in ranges)


def _policy_peers(v: Mapping[str, Any], errors: list[str]) -> PolicyPeers:
    return PolicyPeers(
        sip_namespaces=_namespaces("sipPeerNamespaces", v["sipPeerNamespaces"], errors),
        sip_cidrs=_cidrs("sipPeerCidrs", v["sipPeerCidrs"], errors),
        diameter_namespaces=_namespaces("diameterPeerNamespaces", v["diameterPeerNamespaces"], errors),
        diameter_cidrs=_cidrs("diameterPeerCidrs", v["diameterPeerCidrs"], errors),
    )


def _password(key: str, password: Any, errors: list[str]) -> None:
    """An optional password (empty: the stack generates one); when given, one URLs can carry."""
    if password is None or password == "":
        return
    elif len(password) < MIN_PASSWORD_LENGTH:
        errors.append(f"{key} = <secret of {len(password)} characters>: must be at least {MIN_PASSWORD_LENGTH} characters")
    elif any(c.isspace() or c in "\"'@/:#%?" for c in password):
        errors.append(f"{key} = <secret>: must not contain whitespace or any of \" ' @ / : # % ? (it is used in URLs)")


def _ue_pool(apn: str, key: str, value: str, errors: list[str]) -> UePool | None:
    try:
        net = ipaddress.IPv4Network(value)
    except ValueError:
        errors.append(f"{key} = {value!r}: must be an IPv4 network such as 10.45.0.0/16")
        return None
    if net.prefixlen > 29 or not net.is_private:
        errors.append(f"{key} = {value!r}: must be a private IPv4 network of /29 or larger, e.g. 10.45.0.0/16")
        return None
    return UePool(apn=apn, subnet=str(net), gateway=str(net.network_address + 1))


def _open5gs(v: Mapping[str, Any], mcc: str, mnc: str, errors: list[str]) -> Open5gs:
    """The open5gs slice of the settings (only read when `open5gs` is true)."""
    pools = []
    for apn, key in (("internet", "ueInternetPool"), ("ims", "ueImsPool")):
        pool = _ue_pool(apn, key, v[key] or "", errors)
        if pool is not None:
            pools.append(pool)
    if len(pools) == 2 and ipaddress.IPv4Network(pools[0].subnet).overlaps(ipaddress.IPv4Network(pools[1].subnet)):
        errors.append(
            f"ueInternetPool = {pools[0].subnet!r}, ueImsPool = {pools[1].subnet!r}: the UE pools overlap; "
            "the UPF routes each APN's pool on its own"
        )
    mtu = v["ueMtu"]
    if isinstance(mtu, int) and not 1280 <= mtu <= 1500:
        errors.append(f"ueMtu = {mtu}: must be between 1280 (IPv6 minimum) and 1500")
    storage = v["mongodbStorage"] or ""
    _check(bool(_MEMORY.match(storage)), errors, f"mongodbStorage = {storage!r}: must be a Kubernetes quantity such as 1Gi")
    _password("mongodbPassword", v["mongodbPassword"], errors)
    subs = subscriber_config.parse(v["subscribers"], mcc, mnc, errors) if re.fullmatch(r"[0-9]{3}", mcc) else ()
    return Open5gs(
        ue_pools=tuple(pools),
        mtu=mtu if isinstance(mtu, int) else 0,
        mongodb_storage=storage,
        subscribers=subs,
        mongodb_password=v["mongodbPassword"] or None,
    )


# --- building ----------------------------------------------------------------------------


def _pcscf_gm(v: Mapping[str, Any], errors: list[str]) -> str:
    """pcscfGmExposure, checked against pcscfIpsec: ESP (IP protocol 50) never passes a Service."""
    exposure = v["pcscfGmExposure"] or ""
    _check(
        exposure in PCSCF_GM_EXPOSURES,
        errors,
        f"pcscfGmExposure = {exposure!r}: must be one of {', '.join(PCSCF_GM_EXPOSURES)}",
    )
    _check(
        not (v["pcscfIpsec"] and exposure == "service"),
        errors,
        "pcscfIpsec = true with pcscfGmExposure = 'service': kube-proxy forwards only TCP, UDP and SCTP, "
        "so ESP sent to the Service is never delivered; set pcscfGmExposure to hostNetwork or pcscfIpsec to false",
    )
    return exposure


def from_mapping(
    values: Mapping[str, Any],
    *,
    stack: str,
    schema: Mapping[str, Mapping[str, Any]] | None = None,
    secret: Any = None,
    secret_keys: frozenset[str] | None = None,
) -> Settings:
    """Pure: raw stack config (keys with or without the `ims-core:` prefix) -> Settings.

    `secret`, if given, wraps the Valkey password after validation (pulumi.Output.secret under
    the engine); tests keep the plain string. `secret_keys`: the keys the stack config holds as
    secrets (None: unknown, nothing checked); a key of SECRET_KEYS set outside them is refused.
    """
    schema = load_schema() if schema is None else schema
    errors: list[str] = []
    v = _resolve(values, schema, errors)

    namespace = v["namespace"] or ""
    _check(
        bool(_LABEL.match(namespace)),
        errors,
        f"namespace = {namespace!r}: must be a DNS-1123 label: 1-63 lowercase letters, digits or '-', "
        "starting and ending with a letter or digit",
    )

    mcc, mnc = v["mcc"] or "", v["mnc"] or ""
    _check(bool(re.fullmatch(r"[0-9]{3}", mcc)), errors, f"mcc = {mcc!r}: must be exactly 3 digits, e.g. 001")
    _check(bool(re.fullmatch(r"[0-9]{2,3}", mnc)), errors, f"mnc = {mnc!r}: must be 2 or 3 digits, e.g. 01 or 001")
    mnc3 = mnc.zfill(3) if re.fullmatch(r"[0-9]{2,3}", mnc) else mnc
    ims_domain = _domain("imsDomain", v["imsDomain"] or "", f"ims.mnc{mnc3}.mcc{mcc}.3gppnetwork.org", errors)
    epc_domain = _domain("epcDomain", v["epcDomain"] or "", f"epc.mnc{mnc3}.mcc{mcc}.3gppnetwork.org", errors)
    _check(
        ims_domain != epc_domain or not ims_domain,
        errors,
        f"imsDomain and epcDomain are both {ims_domain!r}: the IMS and EPC domains must differ",
    )
    if _valid_domain(ims_domain) and _valid_domain(epc_domain):
        _zone_clashes(ims_domain, epc_domain, errors)

    registry, tag, platform = v["imageRegistry"] or "", v["imageTag"] or "", v["imagePlatform"] or ""
    _check(
        bool(_REGISTRY.match(registry)),
        errors,
        f"imageRegistry = {registry!r}: must be a lowercase registry host[:port][/path], e.g. localhost:5001/ims-core",
    )
    _check(
        bool(_TAG.match(tag)),
        errors,
        f"imageTag = {tag!r}: must be 1-128 of A-Z a-z 0-9 _ . - (not starting with . or -)",
    )
    _check(tag != "latest", errors, "imageTag = 'latest': pin a version so a rebuild is a visible change")
    _check(
        platform in PLATFORMS or platform == "",
        errors,
        f"imagePlatform = {platform!r}: must be one of {', '.join(PLATFORMS)}, or empty for the platform of the "
        "Docker engine that builds",
    )
    _check(
        not (v["imagePush"] and not v["imageBuild"]),
        errors,
        "imagePush = true with imageBuild = false: nothing is built to push; set imagePush to false or build",
    )
    for key in ("valkeyImage", "corednsImage", "mongodbImage"):
        ref = v[key] or ""
        _check(
            bool(_PINNED_IMAGE.match(ref)) and not ref.endswith(":latest"),
            errors,
            f"{key} = {ref!r}: must be an image reference pinned to a version tag or @sha256 digest (not latest)",
        )

    variant = v["rtpengineVariant"] or ""
    _check(
        variant in RTPENGINE_VARIANTS,
        errors,
        f"rtpengineVariant = {variant!r}: must be one of {', '.join(RTPENGINE_VARIANTS)}",
    )

    media = _media_relay(v, variant, errors)
    peers = _policy_peers(v, errors)
    gm_exposure = _pcscf_gm(v, errors)

    storage = v["valkeyStorage"] or ""
    _check(
        bool(_MEMORY.match(storage)), errors, f"valkeyStorage = {storage!r}: must be a Kubernetes quantity such as 1Gi"
    )

    password = v["valkeyPassword"] or None
    if password is None:
        pass  # the stack generates one
    elif secret_keys is not None and "valkeyPassword" not in secret_keys:
        errors.append(
            "valkeyPassword = <not shown>: set in plain text in the stack config file; remove it "
            "(pulumi config rm valkeyPassword) to let the stack generate one, or set it with "
            "pulumi config set --secret valkeyPassword <16+ characters>"
        )
    elif len(password) < MIN_PASSWORD_LENGTH:
        errors.append(
            f"valkeyPassword = <secret of {len(password)} characters>: must be at least {MIN_PASSWORD_LENGTH} characters"
        )
    elif any(c.isspace() or c in "\"'@/:#" for c in password):
        errors.append(
            "valkeyPassword = <secret>: must not contain whitespace or any of \" ' @ / : # (it is used in URLs)"
        )

    if secret_keys is not None and v["mongodbPassword"] and "mongodbPassword" not in secret_keys:
        errors.append(
            "mongodbPassword = <not shown>: set in plain text in the stack config file; set it with "
            "pulumi config set --secret mongodbPassword <16+ characters>"
        )
    open5gs = _open5gs(v, mcc, mnc, errors) if v["open5gs"] else None
    nfs: dict[str, NetworkFunction] = {}
    seen_addresses: dict[str, str] = {}
    # CGRateS is deployed with charging on (its plan is parsed, with its errors, further down).
    charging_on = isinstance(v.get("charging"), Mapping) and v["charging"].get("enabled") is True
    for name in DEPLOYED_NFS + OPEN5GS_NFS + OPTIONAL_NFS:
        if name == "pgw" and open5gs is None:
            continue
        domain = epc_domain if name in EPC_NFS else ims_domain
        address = _address(f"{name}Address", v[f"{name}Address"] or "", errors)
        if address is not None:
            if address in seen_addresses:
                errors.append(
                    f"{name}Address = {address!r}: clashes with {seen_addresses[address]}Address; every NF needs its own address"
                )
            seen_addresses[address] = name
        replicas, resources = 0, None
        deployed = (
            name in DEPLOYED_NFS
            or (name in OPEN5GS_NFS and open5gs is not None)
            or (name in OPTIONAL_NFS and charging_on)
        )
        if deployed:
            # One HSS, PCRF and PGW: their Diameter state and the UE pools live in one process.
            # One CGRateS: live Ro sessions are in its memory.
            one = name in ("valkey", *OPEN5GS_NFS, *OPTIONAL_NFS)
            replicas = 1 if one else _replicas(name, v[f"{name}Replicas"], errors)
            cpu, memory = v[f"{name}Cpu"] or "", v[f"{name}Memory"] or ""
            _check(bool(_CPU.match(cpu)), errors, f"{name}Cpu = {cpu!r}: must be a CPU quantity such as 250m or 1")
            _check(
                bool(_MEMORY.match(memory)),
                errors,
                f"{name}Memory = {memory!r}: must be a memory quantity such as 256Mi",
            )
            resources = Resources(cpu=cpu, memory=memory)
        nfs[name] = NetworkFunction(
            name=name, fqdn=f"{name}.{domain}", realm=domain, address=address, replicas=replicas, resources=resources
        )

    if secret_keys is not None and v["subscribers"] and "subscribers" not in secret_keys:
        errors.append(
            "subscribers: K and OPc are stored in plain text in the stack config; set them as secrets: "
            "pulumi config set --secret --path 'subscribers[N].k' <32 hex> (and .opc)"
        )
    if open5gs is None and v["subscribers"]:
        errors.append(
            "subscribers: declared with open5gs = false; they are provisioned into open5gs' database only: "
            "set open5gs to true, or provision them in your external HSS"
        )
    sizing = kamailio_sizing(v, errors)
    overload_control = overload(v, errors)
    charging, cgrates = _charging(v, errors)
    stordb_password = v.get("cgratesStorDbPassword") or None
    if stordb_password is not None and secret_keys is not None and "cgratesStorDbPassword" not in secret_keys:
        errors.append(
            "cgratesStorDbPassword = <not shown>: set in plain text in the stack config file; remove it "
            "(pulumi config rm cgratesStorDbPassword) to let the stack generate one, or set it with "
            "pulumi config set --secret cgratesStorDbPassword <16+ characters>"
        )
    elif stordb_password is not None and len(stordb_password) < MIN_PASSWORD_LENGTH:
        errors.append(
            f"cgratesStorDbPassword = <secret of {len(stordb_password)} characters>: must be at least "
            f"{MIN_PASSWORD_LENGTH} characters (or leave it empty: the stack generates one)"
        )

    if errors:
        raise SettingsError(errors)

    return Settings(
        stack=stack,
        namespace=namespace,
        kubeconfig=v["kubeconfig"] or "",
        kube_context=v["kubeContext"] or "",
        mcc=mcc,
        mnc=mnc3,
        ims_domain=ims_domain,
        epc_domain=epc_domain,
        images=Images(
            build=v["imageBuild"],
            registry=registry,
            tag=tag,
            push=v["imagePush"],
            platform=platform or None,
            valkey=v["valkeyImage"],
            coredns=v["corednsImage"],
            mongodb=v["mongodbImage"],
        ),
        rtpengine_variant=variant,
        pcscf_ipsec=v["pcscfIpsec"],
        pcscf_rx=v["pcscfRx"],
        pcscf_gm_exposure=gm_exposure,
        valkey_storage=storage,
        nfs=MappingProxyType(nfs),
        media=media,
        peers=peers,
        valkey_password=secret(password) if secret and password else password,
        open5gs=open5gs
        if open5gs is None or not secret or not open5gs.mongodb_password
        else replace(open5gs, mongodb_password=secret(open5gs.mongodb_password)),
        kamailio=MappingProxyType(sizing),
        overload=overload_control,
        charging=charging,
        cgrates=cgrates,
        cgrates_stordb_password=secret(stordb_password) if secret and stordb_password else stordb_password,
    )


def _charging(v: Mapping[str, Any], errors: list[str]) -> tuple[Charging, CgratesDeployment]:
    """The `charging` plan and how CGRateS runs (images pinned, volume size a quantity)."""
    charging = parse_charging(v.get("charging"), errors)
    for key in ("cgratesStorDbImage", "cgratesLoaderImage"):
        ref = v.get(key) or ""
        _check(
            bool(_PINNED_IMAGE.match(ref)) and not ref.endswith(":latest"),
            errors,
            f"{key} = {ref!r}: must be an image reference pinned to a version tag or @sha256 digest (not latest)",
        )
    storage = v.get("cgratesStorDbStorage") or ""
    _check(
        bool(_MEMORY.match(storage)), errors, f"cgratesStorDbStorage = {storage!r}: must be a Kubernetes quantity such as 1Gi"
    )
    return charging, CgratesDeployment(
        stordb_image=v.get("cgratesStorDbImage") or "",
        loader_image=v.get("cgratesLoaderImage") or "",
        stordb_storage=storage,
    )


def from_pulumi_config() -> Settings:
    """Settings of the running stack. Raises SettingsError before any resource exists."""
    import pulumi
    from pulumi.runtime import config as runtime_config

    values = dict(runtime_config.CONFIG.get())
    # A structured key is secret when any value in it is (pulumi config set --secret --path ...).
    secret_keys = frozenset(_strip_project(k) for k in values if runtime_config.is_config_secret(k))
    return from_mapping(values, stack=pulumi.get_stack(), secret=pulumi.Output.secret, secret_keys=secret_keys)

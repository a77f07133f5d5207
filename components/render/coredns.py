"""IMS DNS: Corefile and zone files of the IMS and EPC domains, rendered from settings.

The IMS zone holds an A record for every NF's FQDN whose address is known, `_sip._udp` and
`_sip._tcp` SRV records for each CSCF, and at the domain apex NAPTR -> SRV -> I-CSCF (the home
network's entry point, RFC 3263). The EPC zone holds the HSS and PCRF. Every other name goes to
the upstream resolver (the cluster DNS, through the pod's /etc/resolv.conf).

The SOA serial is derived from the zone's records: the same settings render byte-identical
files (an unchanged stack previews clean) and any record change gives a new serial. CoreDNS's
`file` plugin reloads a zone whenever the serial differs from the loaded one (it compares for
equality); nothing here transfers zones to secondaries, so RFC 1982 "greater than" ordering has
no consumer. In Kubernetes a zone change also renames the autonamed ConfigMap, which rolls the
CoreDNS pods.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

from ..settings import CSCF_ROLES, Settings

DNS_PORT = 53
# The pod runs as non-root and cannot bind 53; the Service maps 53 to this port.
CONTAINER_PORT = 1053
HEALTH_PORT = 8080
READY_PORT = 8181
SIP_PORT = 5060
TTL = 60
# Seconds between the file plugin's checks of the zone's SOA serial.
ZONE_RELOAD = "10s"


@dataclass(frozen=True, order=True)
class Record:
    """One resource record; `owner` is fully qualified without the trailing dot."""

    owner: str
    type: str
    data: str

    def line(self) -> str:
        return f"{self.owner}. {TTL} IN {self.type} {self.data}"


def zone_records(settings: Settings, addresses: Mapping[str, str], domain: str) -> list[Record]:
    """The records of one zone (IMS or EPC domain), without SOA and NS; `addresses`: NF -> IPv4."""
    records: list[Record] = []
    for name, nf in settings.nfs.items():
        if nf.realm == domain and addresses.get(name):
            records.append(Record(nf.fqdn, "A", addresses[name]))
    if domain == settings.ims_domain:
        for role in CSCF_ROLES:
            fqdn = settings.nf(role).fqdn
            if not addresses.get(role):
                continue  # no SRV pointing at a name without an address
            for transport in ("udp", "tcp"):
                records.append(Record(f"_sip._{transport}.{fqdn}", "SRV", f"0 0 {SIP_PORT} {fqdn}."))
        icscf = settings.nf("icscf")
        if addresses.get("icscf"):
            # The home network's entry point for SIP (RFC 3263): NAPTR -> SRV -> I-CSCF.
            records += [
                Record(domain, "NAPTR", f'10 50 "s" "SIP+D2U" "" _sip._udp.{domain}.'),
                Record(domain, "NAPTR", f'20 50 "s" "SIP+D2T" "" _sip._tcp.{domain}.'),
                Record(f"_sip._udp.{domain}", "SRV", f"0 0 {SIP_PORT} {icscf.fqdn}."),
                Record(f"_sip._tcp.{domain}", "SRV", f"0 0 {SIP_PORT} {icscf.fqdn}."),
            ]
    return sorted(records)


def serial_of(records: list[Record]) -> int:
    """A SOA serial that changes whenever the records change: 31 bits of their SHA-256, never 0."""
    digest = hashlib.sha256("\n".join(r.line() for r in records).encode()).digest()
    return int.from_bytes(digest[:4], "big") % (2**31 - 1) + 1


def zone_file(domain: str, ns_address: str | None, records: list[Record]) -> str:
    """An RFC 1035 master file of `domain`; `ns_address` is the IMS DNS's own address."""
    apex = []
    if ns_address:
        apex.append(Record(f"ns.{domain}", "A", ns_address))
    body = sorted(apex + records)
    serial = serial_of(body)
    lines = [
        "; Rendered by ims-core from the stack settings; the serial is a hash of the records.",
        f"$ORIGIN {domain}.",
        f"$TTL {TTL}",
        f"@ IN SOA ns.{domain}. hostmaster.{domain}. {serial} 3600 600 86400 {TTL}",
        f"@ IN NS ns.{domain}.",
        *(r.line() for r in body),
    ]
    return "\n".join(lines) + "\n"


def zone_file_name(domain: str) -> str:
    return f"db.{domain}"


def render(
    settings: Settings,
    addresses: Mapping[str, str],
    *,
    zone_dir: str = "/etc/coredns",
    bind: str | None = None,
    port: int = CONTAINER_PORT,
    upstream: str = "/etc/resolv.conf",
    health: str = f":{HEALTH_PORT}",
    ready: str = f":{READY_PORT}",
    zone_reload: str = ZONE_RELOAD,
) -> dict[str, str]:
    """Corefile plus one zone file per domain.

    `addresses`: NF name -> IPv4 of the NFs whose address is known (the CoreDNS Service's own
    address under "coredns"). `upstream` is what `forward` sends every other name to: a
    resolv.conf path or addresses. The live tests change only bind, port, paths and upstream.
    """
    ns_address = addresses.get("coredns")
    bind_line = f"    bind {bind}\n" if bind else ""
    files: dict[str, str] = {}
    blocks = []
    for domain in (settings.ims_domain, settings.epc_domain):
        name = zone_file_name(domain)
        files[name] = zone_file(domain, ns_address, zone_records(settings, addresses, domain))
        blocks.append(
            f"{domain}:{port} {{\n{bind_line}"
            f"    file {zone_dir}/{name} {{\n        reload {zone_reload}\n    }}\n"
            "    errors\n    log\n}\n"
        )
    blocks.append(
        f".:{port} {{\n{bind_line}"
        f"    forward . {upstream}\n"
        "    cache 30\n"
        # Stops with a clear log line if the upstream sends our own queries back to us.
        "    loop\n"
        "    errors\n"
        f"    health {health}\n"
        f"    ready {ready}\n"
        "}\n"
    )
    files["Corefile"] = "\n".join(blocks)
    return files


def zone_files(files: Mapping[str, str]) -> dict[str, str]:
    """The zone files among rendered files (everything but the Corefile)."""
    return {name: text for name, text in files.items() if name != "Corefile"}

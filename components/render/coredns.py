"""IMS DNS: Corefile and zone files of the IMS and EPC domains, rendered from settings.

The zones hold an A record for every NF's FQDN whose address is known, `_sip._udp` and
`_sip._tcp` SRV records for each CSCF, and at the IMS domain apex NAPTR -> SRV -> I-CSCF (the
home network's entry point, RFC 3263). Everything else goes to the upstream resolver.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..settings import CSCF_ROLES, Settings

DNS_PORT = 53
SIP_PORT = 5060
TTL = 60


def _zone(domain: str, serial: int, ns_address: str | None, records: list[str]) -> str:
    head = [
        f"$ORIGIN {domain}.",
        f"$TTL {TTL}",
        f"@ IN SOA ns.{domain}. hostmaster.{domain}. ({serial} 3600 600 86400 {TTL})",
        f"@ IN NS ns.{domain}.",
    ]
    if ns_address:
        head.append(f"ns IN A {ns_address}")
    return "\n".join(head + records) + "\n"


def zone_records(settings: Settings, addresses: Mapping[str, str], domain: str) -> list[str]:
    records = []
    for name, nf in settings.nfs.items():
        if nf.realm == domain and addresses.get(name):
            records.append(f"{nf.fqdn}. IN A {addresses[name]}")
    if domain == settings.ims_domain:
        for role in CSCF_ROLES:
            fqdn = settings.nf(role).fqdn
            records += [
                f"_sip._udp.{fqdn}. IN SRV 0 0 {SIP_PORT} {fqdn}.",
                f"_sip._tcp.{fqdn}. IN SRV 0 0 {SIP_PORT} {fqdn}.",
            ]
        icscf = settings.nf("icscf").fqdn
        records += [
            f'@ IN NAPTR 10 50 "s" "SIP+D2U" "" _sip._udp.{domain}.',
            f'@ IN NAPTR 20 50 "s" "SIP+D2T" "" _sip._tcp.{domain}.',
            f"_sip._udp.{domain}. IN SRV 0 0 {SIP_PORT} {icscf}.",
            f"_sip._tcp.{domain}. IN SRV 0 0 {SIP_PORT} {icscf}.",
        ]
    return records


def render(
    settings: Settings,
    addresses: Mapping[str, str],
    *,
    zone_dir: str = "/etc/coredns",
    bind: str | None = None,
    port: int = DNS_PORT,
    upstream: str = "/etc/resolv.conf",
    serial: int = 1,
) -> dict[str, str]:
    """Corefile plus one zone file per domain. `addresses`: NF name -> IPv4 (known ones only)."""
    ns_address = addresses.get("coredns")
    bind_line = f"    bind {bind}\n" if bind else ""
    files: dict[str, str] = {}
    blocks = []
    for domain in (settings.ims_domain, settings.epc_domain):
        files[f"db.{domain}"] = _zone(domain, serial, ns_address, zone_records(settings, addresses, domain))
        blocks.append(f"{domain}:{port} {{\n{bind_line}    file {zone_dir}/db.{domain}\n    errors\n    log\n}}\n")
    blocks.append(
        f".:{port} {{\n{bind_line}    forward . {upstream}\n    cache 30\n    errors\n"
        + ("    health :8080\n    ready :8181\n" if bind is None else "")
        + "}\n"
    )
    files["Corefile"] = "\n".join(blocks)
    return files

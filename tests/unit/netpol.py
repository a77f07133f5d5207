"""Who a set of rendered NetworkPolicies admits, by the Kubernetes semantics (networking/v1).

The unit tier asks the question a user asks of a policy ("does an application server in
namespace ims-as reach the S-CSCF's SIP port?") instead of comparing the policy's shape:
- a pod is isolated for ingress when a policy of its namespace selects it; then a packet is
  admitted only when some rule of some selecting policy admits it;
- a rule admits when one of its ports matches (no ports: every port) and one of its peers
  matches (no `from`: every source);
- a peer with only `podSelector` means pods of the policy's own namespace; with only
  `namespaceSelector` every pod of the matching namespaces; with both, both; `ipBlock` is
  matched against the packet's source address.
What a CNI does with ipBlock for pod sources is left to it by the API; these tests use
ipBlock for sources outside the cluster only.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"


@dataclass(frozen=True)
class Source:
    """Where a packet comes from: a pod (namespace + labels) or an address outside the cluster."""

    ip: str
    namespace: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    namespace_labels: dict[str, str] = field(default_factory=dict)

    @staticmethod
    def pod(namespace: str, labels: dict[str, str], ip: str = "10.244.9.9") -> Source:
        return Source(ip, namespace, dict(labels), {NAMESPACE_NAME_LABEL: namespace})


@dataclass(frozen=True)
class Policy:
    namespace: str
    spec: dict


def _selects(selector: dict | None, labels: dict[str, str]) -> bool:
    if selector is None:
        return False
    if selector.get("matchExpressions"):
        raise NotImplementedError("matchExpressions")
    return all(labels.get(k) == v for k, v in (selector.get("matchLabels") or {}).items())


def _peer_matches(peer: dict, policy_ns: str, src: Source) -> bool:
    if "ipBlock" in peer:
        block = peer["ipBlock"]
        address = ipaddress.ip_address(src.ip)
        return address in ipaddress.ip_network(block["cidr"]) and not any(
            address in ipaddress.ip_network(e) for e in block.get("except") or []
        )
    if src.namespace is None:
        return False
    if "namespaceSelector" in peer:
        if not _selects(peer["namespaceSelector"], src.namespace_labels):
            return False
    elif src.namespace != policy_ns:
        return False
    return "podSelector" not in peer or _selects(peer["podSelector"], src.labels)


def _port_matches(rule_port: dict, port: int, protocol: str) -> bool:
    if rule_port.get("protocol", "TCP") != protocol:
        return False
    if "port" not in rule_port:
        return True
    low = rule_port["port"]
    if isinstance(low, str):
        raise NotImplementedError("named ports")
    # Numbers come back from the Pulumi mocks as floats.
    return int(low) <= port <= int(rule_port.get("endPort", low))


def admitted(policies: list[Policy], dest_ns: str, dest_labels: dict[str, str], port: int, protocol: str, src: Source) -> bool:
    """Does a packet from `src` to `port`/`protocol` of a pod (dest_ns, dest_labels) get in?"""
    selecting = [
        p
        for p in policies
        if p.namespace == dest_ns
        and "Ingress" in (p.spec.get("policyTypes") or ["Ingress"])
        and _selects(p.spec.get("podSelector") or {}, dest_labels)
    ]
    if not selecting:
        return True
    for p in selecting:
        for rule in p.spec.get("ingress") or []:
            ports = rule.get("ports") or []
            if ports and not any(_port_matches(rp, port, protocol) for rp in ports):
                continue
            peers = rule.get("from") or []
            if not peers or any(_peer_matches(peer, p.namespace, src) for peer in peers):
                return True
    return False

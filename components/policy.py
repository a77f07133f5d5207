"""NetworkPolicy sources beyond this stack's own pods, from the `*PeerNamespaces` / `*PeerCidrs`
settings.

A pod selector alone matches pods of the policy's own namespace only, and an ipBlock is
matched against the packet's source address, which is a pod's or a host's, never a Service's
ClusterIP: peers in another namespace are named by namespace, peers outside the cluster by
their source range.
"""

from __future__ import annotations

from collections.abc import Iterable

import pulumi_kubernetes as k8s

from .settings import Settings

# Set by Kubernetes on every namespace (1.22+): selects a namespace by its name.
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"


def namespace_peers(names: Iterable[str]) -> list[k8s.networking.v1.NetworkPolicyPeerArgs]:
    """Every pod in each named namespace."""
    return [
        k8s.networking.v1.NetworkPolicyPeerArgs(
            namespace_selector=k8s.meta.v1.LabelSelectorArgs(match_labels={NAMESPACE_NAME_LABEL: name})
        )
        for name in names
    ]


def cidr_peers(cidrs: Iterable[str]) -> list[k8s.networking.v1.NetworkPolicyPeerArgs]:
    """Sources in each IPv4 range."""
    return [k8s.networking.v1.NetworkPolicyPeerArgs(ip_block=k8s.networking.v1.IPBlockArgs(cidr=cidr)) for cidr in cidrs]


def unadmitted_diameter_peer(settings: Settings, peer: str) -> str | None:
    """The warning for an HSS/PCRF outside this stack (`<peer>Address` set) that no Diameter
    peer setting admits: it can answer the CSCFs, but what it opens (open5gs' HSS connects
    first; RTR, PPR, ASR, RAR) is dropped wherever policies are enforced."""
    nf = settings.nf(peer)
    if not nf.address or settings.peers.diameter_namespaces or settings.peers.diameter_cidrs:
        return None
    return (
        f"{peer}Address = {nf.address!r} but diameterPeerNamespaces and diameterPeerCidrs are empty: "
        f"Diameter the {peer.upper()} opens towards the CSCFs is dropped by their NetworkPolicies; "
        f"set the namespace it runs in or its source range"
    )

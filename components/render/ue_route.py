"""The return route of the UE pools: how a node sends UE addresses to the PGW pod.

The P-CSCF and rtpengine answer UEs at their own addresses from `ueImsPool` (the UPF does not
NAT the ims APN, so Rx and the SDP see the real UE address). Those packets leave their pods by
the default route to the node; the node must send the pool to the PGW pod, where upfd's TUN
device takes it into the GTP tunnel. Kubernetes has no object for "this prefix lives behind
that pod", so this module renders a node script (exported as `uePoolRouteScript`; dev-up.sh
runs it on every kind node): given the PGW pod's address, it routes the pool the way the node
already reaches that pod, with the same next hop and device (`ip route get`):

- on the PGW pod's own node, on-link to the pod over its veth;
- on the others, via the hop the CNI installed towards the PGW pod's node (kindnet, flannel
  host-gw or VXLAN, kube-router, Calico without BGP export all program such routes).

It is idempotent (`ip route replace`) and must run again when the PGW pod gets a new address
(a new pod). A CNI that speaks BGP (Calico, Cilium BGP, kube-router) can instead advertise the
pool with the PGW pod's node as next hop; a CNI that drops pod traffic with a foreign source
address (UE → P-CSCF packets leave the PGW pod with the UE's address) needs that allowed too.
The internet pool is NATed by the UPF to the pod's address and needs no route.
"""

from __future__ import annotations

from ..settings import Settings

ROUTED_APNS = ("ims",)


def routed_pools(settings: Settings) -> list[str]:
    """The UE pools nodes must route to the PGW pod (not the NATed ones)."""
    if settings.open5gs is None:
        return []
    return [p.subnet for p in settings.open5gs.ue_pools if p.apn in ROUTED_APNS]


def route_script(settings: Settings) -> str:
    """POSIX sh, run as root on a node (iproute2): `sh -s -- <PGW pod IP>`."""
    pools = " ".join(routed_pools(settings))
    return f"""#!/bin/sh
# Rendered from the stack settings (stack {settings.stack}); run on every node as root:
#   sh -s -- <PGW pod IP> < this-script
# Routes the UE pools ({pools}) to the PGW pod the way this node reaches the pod itself.
set -eu
pod=${{1:?usage: sh -s -- <PGW pod IP>}}
route=$(ip -o -4 route get "$pod")
dev=${{route#* dev }}
dev=${{dev%% *}}
case "$route" in
    *" via "*) hop=${{route#* via }}; hop=${{hop%% *}} ;;
    *) hop=$pod ;;
esac
for pool in {pools}; do
    ip route replace "$pool" via "$hop" dev "$dev" onlink
    echo "$(hostname): $pool via $hop dev $dev (PGW pod $pod)"
done
"""

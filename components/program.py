"""The whole stack: provider, namespace, images and one component per network function."""

from __future__ import annotations

from dataclasses import dataclass, replace

import pulumi
import pulumi_kubernetes as k8s

from .base import DeployContext
from .cgrates import Cgrates
from .coredns import ImsDns
from .cscf import Cscf
from .images import ImagePipeline, rtpengine_image
from .naming import PART_OF
from .open5gs import Hss, Open5gsArgs, Pcrf, Pgw, SubscriberDb, SubscriberProvisioning
from .password import GeneratedPassword
from .pod_security import namespace_annotations, namespace_labels
from .render import ue_route as render_ue_route
from .rtpengine import Rtpengine
from .settings import CSCF_ROLES, Settings
from .valkey import Valkey


@dataclass(frozen=True)
class Stack:
    namespace: pulumi.Output[str]
    cscfs: dict[str, Cscf]
    valkey: Valkey
    ims_dns: ImsDns
    rtpengine: Rtpengine
    images: ImagePipeline
    cgrates: Cgrates | None = None
    open5gs: dict[str, pulumi.ComponentResource] | None = None


def build(settings: Settings) -> Stack:
    provider = k8s.Provider(
        "kubernetes",
        kubeconfig=settings.kubeconfig or None,
        context=settings.kube_context or None,
    )
    namespace = k8s.core.v1.Namespace(
        "namespace",
        metadata=k8s.meta.v1.ObjectMetaArgs(
            name=settings.namespace,
            labels={
                "app.kubernetes.io/part-of": PART_OF,
                "app.kubernetes.io/managed-by": "pulumi",
                **namespace_labels(settings),
            },
            annotations=namespace_annotations(settings),
        ),
        opts=pulumi.ResourceOptions(provider=provider),
    )
    wanted = (
        ["kamailio", rtpengine_image(settings)]
        + (["open5gs", "open5gs-provision"] if settings.open5gs else [])
        + (["cgrates"] if settings.charging.enabled else [])
    )
    images = ImagePipeline("images", settings, wanted)
    # No password in the stack config: the stack draws one and keeps it, secret, in its state.
    password = settings.valkey_password or GeneratedPassword("valkey-password").result
    ctx = DeployContext(
        settings=settings, provider=provider, namespace=namespace.metadata.name, images=images, valkey_password=password
    )

    # The IMS DNS Service comes first: the CSCF pods use its address as their resolver, and
    # its zones then follow the addresses the other Services get.
    ims_dns = ImsDns(ctx)
    valkey = Valkey(ctx)
    rtpengine = Rtpengine(ctx)
    clients = replace(ctx, resolver=ims_dns.address, valkey_secret=valkey.secrets.metadata.name)
    cscfs = {role: Cscf(role, clients) for role in CSCF_ROLES}
    addresses = {role: c.address for role, c in cscfs.items()}
    addresses.update(valkey=valkey.address, rtpengine=rtpengine.address)
    open5gs = build_open5gs(clients, ims_dns, cscfs) if settings.open5gs else None
    if open5gs:
        addresses.update({nf: open5gs[nf].address for nf in ("hss", "pcrf", "pgw")})
    # Billing: the S-CSCF's Ro peer, found by name through the IMS DNS.
    cgrates = Cgrates(ctx) if settings.charging.enabled else None
    if cgrates is not None:
        addresses.update(cgrates=cgrates.address)
    ims_dns.publish(addresses)
    return Stack(
        namespace=namespace.metadata.name,
        cscfs=cscfs,
        valkey=valkey,
        ims_dns=ims_dns,
        rtpengine=rtpengine,
        images=images,
        open5gs=open5gs,
        cgrates=cgrates,
    )


def build_open5gs(ctx: DeployContext, ims_dns: ImsDns, cscfs: dict[str, Cscf]) -> dict[str, pulumi.ComponentResource]:
    """HSS, PCRF and PGW with their database and the declared subscribers (open5gs: true)."""
    db = SubscriberDb(ctx)
    args = Open5gsArgs(db=db, ims_dns_address=ims_dns.address, pcscf_address=cscfs["pcscf"].address)
    return {
        "mongodb": db,
        "provisioning": SubscriberProvisioning(ctx, db),
        "hss": Hss(ctx, args),
        "pcrf": Pcrf(ctx, args),
        "pgw": Pgw(ctx, args),
    }


def export(stack: Stack, settings: Settings) -> None:
    pulumi.export("namespace", stack.namespace)
    pulumi.export("imsDomain", settings.ims_domain)
    pulumi.export("epcDomain", settings.epc_domain)
    pulumi.export("pcscfFqdn", settings.nf("pcscf").fqdn)
    pulumi.export("pcscfAddress", stack.cscfs["pcscf"].address)
    # The DNS server the PGW hands to UEs.
    pulumi.export("imsDnsAddress", stack.ims_dns.address)
    pulumi.export("rtpengineImage", stack.images.reference(rtpengine_image(settings)))
    if settings.open5gs:
        # The UE pools the cluster must route to the PGW pod (README: the return route).
        pulumi.export("uePools", {p.apn: p.subnet for p in settings.open5gs.ue_pools})
        # The node script that routes them (components/render/ue_route.py; dev-up.sh runs it).
        pulumi.export("uePoolRouteScript", render_ue_route.route_script(settings))
        pulumi.export("subscribers", len(settings.open5gs.subscribers))

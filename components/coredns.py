"""CoreDNS as the IMS DNS: the IMS and EPC zones, following the Services' real addresses.

The zones are rendered from the ClusterIP Outputs of the NFs' Services (or the fixed addresses
in settings), so an address change re-renders them; the ConfigMap is autonamed, so a new zone
is a new ConfigMap name in the pod template and the CoreDNS pods roll. Its own Service address
is the DNS server the PGW hands to UEs (`imsDnsAddress`).
"""

from __future__ import annotations

from collections.abc import Mapping

import pulumi
import pulumi_kubernetes as k8s

from .base import DeployContext, NetworkFunctionComponent, config_volume, non_root_security_context
from .render import coredns as render_coredns

CONFIG_DIR = "/etc/coredns"
# The peers outside this stack (open5gs, wave 2) and who resolves them by name.
DIAMETER_CLIENTS = {"hss": "I-CSCF and S-CSCF (Cx)", "pcrf": "P-CSCF (Rx)"}


class ImsDns(NetworkFunctionComponent):
    nf = "coredns"
    component = "ims-dns"

    def __init__(self, ctx: DeployContext, opts: pulumi.ResourceOptions | None = None):
        """The Service first: the other NFs' pods name its address as their resolver."""
        super().__init__("ims:dns:ImsDns", ctx, opts)
        settings = ctx.settings
        dns, target = render_coredns.DNS_PORT, render_coredns.CONTAINER_PORT
        self.svc = self.service(
            [
                k8s.core.v1.ServicePortArgs(name="dns-udp", port=dns, target_port=target, protocol="UDP"),
                k8s.core.v1.ServicePortArgs(name="dns-tcp", port=dns, target_port=target, protocol="TCP"),
            ],
            cluster_ip=settings.nf("coredns").address,
        )
        self.address = self.svc.spec.cluster_ip

    def publish(self, addresses: Mapping[str, pulumi.Input[str]]) -> None:
        """Serve the zones. `addresses`: NF name -> address Output (ClusterIPs) of the NFs they name."""
        settings = self.settings
        target = render_coredns.CONTAINER_PORT
        known: dict[str, pulumi.Input[str]] = {name: nf.address for name, nf in settings.nfs.items() if nf.address}
        known.update(addresses)
        known["coredns"] = self.address
        for peer, clients in DIAMETER_CLIENTS.items():
            if peer not in known:
                # Diagnosable in one look: cdp resolves Diameter peers by name and would find none.
                pulumi.log.warn(
                    f"{peer}Address is empty: {settings.nf(peer).fqdn} gets no A record, so the {clients} "
                    f"cannot reach the {peer.upper()} until it is set",
                    resource=self,
                )
        self.files = pulumi.Output.all(**known).apply(lambda resolved: render_coredns.render(settings, resolved))
        self.config = self.config_map("zones", self.files)

        container = k8s.core.v1.ContainerArgs(
            name="coredns",
            image=settings.images.coredns,
            args=["-conf", f"{CONFIG_DIR}/Corefile"],
            ports=[
                k8s.core.v1.ContainerPortArgs(name="dns-udp", container_port=target, protocol="UDP"),
                k8s.core.v1.ContainerPortArgs(name="dns-tcp", container_port=target, protocol="TCP"),
            ],
            resources=self.resources(),
            security_context=non_root_security_context(),
            volume_mounts=[k8s.core.v1.VolumeMountArgs(name="zones", mount_path=CONFIG_DIR, read_only=True)],
            # The ready plugin answers 200 once every server block is up and serving.
            readiness_probe=k8s.core.v1.ProbeArgs(
                http_get=k8s.core.v1.HTTPGetActionArgs(path="/ready", port=render_coredns.READY_PORT),
                period_seconds=5,
            ),
            liveness_probe=k8s.core.v1.ProbeArgs(
                http_get=k8s.core.v1.HTTPGetActionArgs(path="/health", port=render_coredns.HEALTH_PORT),
                period_seconds=20,
                failure_threshold=3,
            ),
        )
        self.workload = self.deployment(
            k8s.core.v1.PodSpecArgs(
                containers=[container],
                volumes=[config_volume("zones", self.config)],
                enable_service_links=False,
                # Every CSCF resolves through these pods only: a node drain or a node failure
                # must leave one of them serving.
                topology_spread_constraints=self.spread(),
            )
        )
        self.disruption_budget(max_unavailable=1)
        if settings.nf("coredns").replicas < 2:
            pulumi.log.warn(
                f"corednsReplicas = {settings.nf('coredns').replicas}: the IMS DNS is every CSCF's only resolver; "
                "with one pod a node drain or failure stops name resolution for the whole core (2 or more keep one)",
                resource=self,
            )
        # DNS is open to anyone who can route to it (UEs through the UPF, the CSCFs); nothing else.
        self.network_policy(
            [
                k8s.networking.v1.NetworkPolicyIngressRuleArgs(
                    ports=[
                        k8s.networking.v1.NetworkPolicyPortArgs(port=target, protocol="UDP"),
                        k8s.networking.v1.NetworkPolicyPortArgs(port=target, protocol="TCP"),
                    ]
                )
            ]
        )
        self.register_outputs(
            {"address": self.address, "configMap": self.config.metadata.name, "deployment": self.workload.metadata.name}
        )

"""CoreDNS as the IMS DNS: the IMS and EPC zones, following the Services' real addresses."""

from __future__ import annotations

from collections.abc import Mapping

import pulumi
import pulumi_kubernetes as k8s

from .base import DeployContext, NetworkFunctionComponent, config_volume, non_root_security_context
from .render import coredns as render_coredns


class ImsDns(NetworkFunctionComponent):
    nf = "coredns"
    component = "ims-dns"

    def __init__(
        self,
        ctx: DeployContext,
        addresses: Mapping[str, pulumi.Input[str]],
        opts: pulumi.ResourceOptions | None = None,
    ):
        """`addresses`: NF name -> address Output (ClusterIPs) of the NFs the zones name."""
        super().__init__("ims:dns:ImsDns", ctx, opts)
        settings = ctx.settings
        port = render_coredns.DNS_PORT
        self.svc = self.service(
            [
                k8s.core.v1.ServicePortArgs(name="dns-udp", port=port, target_port=1053, protocol="UDP"),
                k8s.core.v1.ServicePortArgs(name="dns-tcp", port=port, target_port=1053, protocol="TCP"),
            ],
            cluster_ip=settings.nf("coredns").address,
        )
        self.address = self.svc.spec.cluster_ip
        known = {name: nf.address for name, nf in settings.nfs.items() if nf.address}
        known.update(addresses)
        known["coredns"] = self.address
        files = pulumi.Output.all(**known).apply(lambda resolved: render_coredns.render(settings, resolved, port=1053))
        self.config = self.config_map("zones", files)
        container = k8s.core.v1.ContainerArgs(
            name="coredns",
            image=settings.images.coredns,
            args=["-conf", "/etc/coredns/Corefile"],
            ports=[
                k8s.core.v1.ContainerPortArgs(name="dns-udp", container_port=1053, protocol="UDP"),
                k8s.core.v1.ContainerPortArgs(name="dns-tcp", container_port=1053, protocol="TCP"),
            ],
            resources=self.resources(),
            security_context=non_root_security_context(),
            volume_mounts=[k8s.core.v1.VolumeMountArgs(name="zones", mount_path="/etc/coredns", read_only=True)],
            # CoreDNS's ready plugin answers 200 once every zone is loaded.
            readiness_probe=k8s.core.v1.ProbeArgs(
                http_get=k8s.core.v1.HTTPGetActionArgs(path="/ready", port=8181), period_seconds=10
            ),
            liveness_probe=k8s.core.v1.ProbeArgs(
                http_get=k8s.core.v1.HTTPGetActionArgs(path="/health", port=8080), period_seconds=20
            ),
        )
        self.workload = self.deployment(
            k8s.core.v1.PodSpecArgs(
                containers=[container], volumes=[config_volume("zones", self.config)], enable_service_links=False
            )
        )
        self.register_outputs({"address": self.address, "configMap": self.config.metadata.name})

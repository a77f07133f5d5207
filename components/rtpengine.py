"""rtpengine media relay: the Alpine or Ubuntu image, by stack config."""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s

from .base import DeployContext, NetworkFunctionComponent, config_volume
from .images import rtpengine_image
from .render import rtpengine as render_rtpengine


class Rtpengine(NetworkFunctionComponent):
    nf = "rtpengine"
    component = "media-relay"

    def __init__(self, ctx: DeployContext, opts: pulumi.ResourceOptions | None = None):
        super().__init__("ims:media:Rtpengine", ctx, opts)
        settings = ctx.settings
        self.image_key = rtpengine_image(settings)
        self.config = self.config_map("config", render_rtpengine.render(settings))
        ng = render_rtpengine.NG_PORT
        container = k8s.core.v1.ContainerArgs(
            name="rtpengine",
            image=ctx.images.reference(self.image_key),
            args=["--config-file=/etc/rtpengine/rtpengine.conf", "--config-section=rtpengine"],
            ports=[k8s.core.v1.ContainerPortArgs(name="ng", container_port=ng, protocol="UDP")],
            resources=self.resources(),
            security_context=k8s.core.v1.SecurityContextArgs(
                allow_privilege_escalation=False, capabilities=k8s.core.v1.CapabilitiesArgs(drop=["ALL"])
            ),
            volume_mounts=[k8s.core.v1.VolumeMountArgs(name="config", mount_path="/etc/rtpengine", read_only=True)],
        )
        # Media ports are bound on the node (host network): one pod per node, so Recreate.
        self.workload = self.deployment(
            k8s.core.v1.PodSpecArgs(
                containers=[container],
                host_network=True,
                dns_policy="ClusterFirstWithHostNet",
                volumes=[config_volume("config", self.config)],
                enable_service_links=False,
            ),
            recreate=True,
        )
        self.svc = self.service(
            [k8s.core.v1.ServicePortArgs(name="ng", port=ng, protocol="UDP")],
            cluster_ip=settings.nf("rtpengine").address,
        )
        # NG control only from the P-CSCF.
        self.network_policy(
            [
                k8s.networking.v1.NetworkPolicyIngressRuleArgs(
                    ports=[k8s.networking.v1.NetworkPolicyPortArgs(port=ng, protocol="UDP")],
                    from_=self.from_nfs("pcscf"),
                )
            ]
        )
        self.address = self.svc.spec.cluster_ip
        self.register_outputs({"address": self.address, "image": ctx.images.reference(self.image_key)})

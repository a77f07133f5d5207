"""rtpengine media relay: the Alpine or Ubuntu image, by stack config.

Media reaches the pod in one of two ways (rtpengineMediaExposure):
- hostNetwork: the pod uses the node's network; the whole port range is there with no per-port
  rule and no NAT. NG then listens on the node's address too, where NetworkPolicies do not apply.
- hostPort: the pod stays in the pod network (NG protected by the NetworkPolicy); each media
  port is mapped from the node, so the range is kept small, and SDP carries the node's address.
Either way a node can hold one rtpengine pod, so the Deployment uses strategy Recreate.
"""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s

from .base import NON_ROOT_UID, DeployContext, NetworkFunctionComponent, config_volume, non_root_security_context
from .images import rtpengine_image
from .render import rtpengine as render_rtpengine

# The NG readiness probe script shipped in both images (dockerfiles/rtpengine/*/).
NG_PING = "/usr/local/bin/rtpengine-ng-ping"


def _field_env(name: str, path: str) -> k8s.core.v1.EnvVarArgs:
    return k8s.core.v1.EnvVarArgs(
        name=name,
        value_from=k8s.core.v1.EnvVarSourceArgs(field_ref=k8s.core.v1.ObjectFieldSelectorArgs(field_path=path)),
    )


class Rtpengine(NetworkFunctionComponent):
    nf = "rtpengine"
    component = "media-relay"

    def __init__(self, ctx: DeployContext, opts: pulumi.ResourceOptions | None = None):
        super().__init__("ims:media:Rtpengine", ctx, opts)
        settings = ctx.settings
        media = settings.media
        host_network = media.exposure == "hostNetwork"
        self.image_key = rtpengine_image(settings)
        self.config = self.config_map("config", render_rtpengine.render(settings))
        ng = render_rtpengine.NG_PORT

        # Bound to the pod's address (the node's with hostNetwork); SDP shows the configured
        # address, else the node's. Kubernetes expands $(VAR) in args from the env below.
        env = [_field_env("POD_IP", "status.podIP")]
        if media.advertise_address:
            advertise = media.advertise_address
        elif host_network:
            advertise = None  # the pod's address is the node's
        else:
            env.append(_field_env("HOST_IP", "status.hostIP"))
            advertise = "$(HOST_IP)"
        ports = [k8s.core.v1.ContainerPortArgs(name="ng", container_port=ng, protocol="UDP")]
        if not host_network:
            ports += [
                k8s.core.v1.ContainerPortArgs(container_port=port, host_port=port, protocol="UDP")
                for port in range(media.port_min, media.port_max + 1)
            ]
        container = k8s.core.v1.ContainerArgs(
            name="rtpengine",
            image=ctx.images.reference(self.image_key),
            args=render_rtpengine.daemon_args("$(POD_IP)", advertise),
            env=env,
            ports=ports,
            resources=self.resources(),
            # Userspace relay on unprivileged ports: nothing to add, everything dropped.
            security_context=non_root_security_context(NON_ROOT_UID),
            volume_mounts=[
                k8s.core.v1.VolumeMountArgs(name="config", mount_path=render_rtpengine.CONFIG_DIR, read_only=True)
            ],
            # Ready means NG answers a bencoded ping with pong (the script reads POD_IP).
            readiness_probe=k8s.core.v1.ProbeArgs(
                exec_=k8s.core.v1.ExecActionArgs(command=[NG_PING]),
                period_seconds=10,
                timeout_seconds=5,
            ),
        )
        self.workload = self.deployment(
            k8s.core.v1.PodSpecArgs(
                containers=[container],
                host_network=host_network,
                dns_policy="ClusterFirstWithHostNet" if host_network else None,
                volumes=[config_volume("config", self.config)],
                enable_service_links=False,
            ),
            recreate=True,
        )
        self.svc = self.service(
            [k8s.core.v1.ServicePortArgs(name="ng", port=ng, protocol="UDP")],
            cluster_ip=settings.nf("rtpengine").address,
        )
        # NG control only from the P-CSCF; media ports from anywhere (UEs). With hostPort the
        # media arrives DNATed into the pod network, where this policy applies.
        self.network_policy(
            [
                k8s.networking.v1.NetworkPolicyIngressRuleArgs(
                    ports=[k8s.networking.v1.NetworkPolicyPortArgs(port=ng, protocol="UDP")],
                    from_=self.from_nfs("pcscf"),
                ),
                k8s.networking.v1.NetworkPolicyIngressRuleArgs(
                    ports=[
                        k8s.networking.v1.NetworkPolicyPortArgs(
                            port=media.port_min, end_port=media.port_max, protocol="UDP"
                        )
                    ],
                ),
            ]
        )
        self.address = self.svc.spec.cluster_ip
        self.register_outputs(
            {
                "address": self.address,
                "image": ctx.images.reference(self.image_key),
                "variant": media.variant,
                "mediaExposure": media.exposure,
            }
        )

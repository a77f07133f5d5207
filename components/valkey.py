"""Valkey, the IMS database: a StatefulSet with a volume, AOF persistence and a password.

The password comes from the `valkeyPassword` Pulumi secret and reaches the pod only through a
Kubernetes Secret (the `requirepass` include and the probe's environment); valkey.conf in the
ConfigMap names the include file, never the password. The PersistentVolumeClaim outlives the
pod (and, by the StatefulSet default, the StatefulSet), so the AOF replays on every restart.
"""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s

from .base import DeployContext, NetworkFunctionComponent, config_volume, non_root_security_context, secret_volume
from .render import valkey as render_valkey
from .settings import DEPLOYED_NFS

# The upstream image's valkey user.
VALKEY_UID = 999


class Valkey(NetworkFunctionComponent):
    nf = "valkey"
    component = "ims-database"

    def __init__(self, ctx: DeployContext, opts: pulumi.ResourceOptions | None = None):
        super().__init__("ims:valkey:Valkey", ctx, opts)
        settings = ctx.settings
        self.config = self.config_map("config", render_valkey.render(settings, secret_dir=render_valkey.SECRET_DIR))
        self.secrets = self.secret(
            "auth", pulumi.Output.from_input(settings.valkey_password).apply(render_valkey.render_secrets)
        )
        port = render_valkey.VALKEY_PORT
        container = k8s.core.v1.ContainerArgs(
            name="valkey",
            image=settings.images.valkey,
            command=["valkey-server", "/etc/valkey/valkey.conf"],
            ports=[k8s.core.v1.ContainerPortArgs(name="valkey", container_port=port)],
            resources=self.resources(),
            # valkey-cli reads the password from the environment (the readiness probe), never argv.
            env=[
                k8s.core.v1.EnvVarArgs(
                    name=variable,
                    value_from=k8s.core.v1.EnvVarSourceArgs(
                        secret_key_ref=k8s.core.v1.SecretKeySelectorArgs(
                            name=self.secrets.metadata.name, key=render_valkey.PASSWORD_FILE
                        )
                    ),
                )
                for variable in ("VALKEYCLI_AUTH", "REDISCLI_AUTH")
            ],
            security_context=non_root_security_context(VALKEY_UID),
            volume_mounts=[
                k8s.core.v1.VolumeMountArgs(name="config", mount_path="/etc/valkey", read_only=True),
                k8s.core.v1.VolumeMountArgs(name="auth", mount_path=render_valkey.SECRET_DIR, read_only=True),
                k8s.core.v1.VolumeMountArgs(name="data", mount_path="/data"),
            ],
            # Ready means it answers an authenticated PING (so the password took effect).
            readiness_probe=k8s.core.v1.ProbeArgs(
                exec_=k8s.core.v1.ExecActionArgs(command=["sh", "-c", f"valkey-cli -p {port} ping | grep -qx PONG"]),
                period_seconds=5,
                timeout_seconds=3,
            ),
            liveness_probe=k8s.core.v1.ProbeArgs(
                tcp_socket=k8s.core.v1.TCPSocketActionArgs(port=port),
                # Replaying a large AOF takes a while; do not kill it for that.
                initial_delay_seconds=30,
                period_seconds=20,
            ),
        )
        self.statefulset = k8s.apps.v1.StatefulSet(
            "valkey-statefulset",
            metadata=self.metadata("valkey"),
            spec=k8s.apps.v1.StatefulSetSpecArgs(
                service_name="valkey",
                replicas=1,
                selector=k8s.meta.v1.LabelSelectorArgs(match_labels=self.selector),
                template=k8s.core.v1.PodTemplateSpecArgs(
                    metadata=self.pod_metadata(),
                    spec=k8s.core.v1.PodSpecArgs(
                        containers=[container],
                        security_context=k8s.core.v1.PodSecurityContextArgs(fs_group=VALKEY_UID),
                        volumes=[config_volume("config", self.config), secret_volume("auth", self.secrets)],
                        enable_service_links=False,
                    ),
                ),
                volume_claim_templates=[
                    k8s.core.v1.PersistentVolumeClaimArgs(
                        metadata=k8s.meta.v1.ObjectMetaArgs(name="data", labels=self.labels),
                        spec=k8s.core.v1.PersistentVolumeClaimSpecArgs(
                            access_modes=["ReadWriteOnce"],
                            resources=k8s.core.v1.VolumeResourceRequirementsArgs(
                                requests={"storage": settings.valkey_storage}
                            ),
                        ),
                    )
                ],
            ),
            opts=self.child_opts(),
        )
        self.svc = self.service(
            [k8s.core.v1.ServicePortArgs(name="valkey", port=port, protocol="TCP")],
            cluster_ip=settings.nf("valkey").address,
        )
        # Only its clients (settings allocate each a database): the CSCFs, and CGRateS when charging is on.
        self.clients = [
            c for c in sorted(settings.valkey_databases)
            if c in DEPLOYED_NFS and (c != "cgrates" or settings.charging.enabled)
        ]
        self.policy = self.network_policy(
            [
                k8s.networking.v1.NetworkPolicyIngressRuleArgs(
                    ports=[k8s.networking.v1.NetworkPolicyPortArgs(port=port, protocol="TCP")],
                    from_=self.from_nfs(*self.clients),
                )
            ]
        )
        self.address = self.svc.spec.cluster_ip
        self.register_outputs({"address": self.address, "statefulSet": self.statefulset.metadata.name})

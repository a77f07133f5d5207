"""Valkey, the IMS database: a StatefulSet with a volume, AOF persistence and a password.

The password (the `valkeyPassword` secret, or the one the stack generated) reaches the pod only
through a Kubernetes Secret (the `requirepass` include and the probe's environment); valkey.conf
in the ConfigMap names the include file, never the password.

The AOF lives on the claim `data-valkey-0`, sized by `valkeyStorage` (grows in place, a shrink
fails the preview: components/stateful.py), and replays on every restart.
"""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s

from .base import DeployContext, NetworkFunctionComponent, config_volume, non_root_security_context, secret_volume
from .interfaces import valkey_clients
from .render import valkey as render_valkey
from .settings import DEPLOYED_NFS
from .stateful import DataStorage, single_instance_statefulset

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
            "auth", pulumi.Output.from_input(ctx.valkey_password).apply(render_valkey.render_secrets)
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
        self.instance = single_instance_statefulset(
            self,
            "valkey",
            storage=DataStorage("valkeyStorage", settings.valkey_storage, "Valkey volume claim"),
            labels=self.labels,
            selector=self.selector,
            containers=[container],
            volumes=[config_volume("config", self.config), secret_volume("auth", self.secrets)],
            fs_group=VALKEY_UID,
        )
        self.statefulset, self.claim = self.instance.statefulset, self.instance.claim
        # One instance, its data on one ReadWriteOnce volume: evicting it stops every registration
        # write until it runs again elsewhere. maxUnavailable 0 makes a drain wait for whoever runs
        # the core to move it (kubectl delete pod valkey-0) at a time they choose (the Kubernetes
        # docs' answer for a single-instance stateful application). A pod that is not running
        # anyway never blocks a drain.
        self.disruption_budget(max_unavailable=0)
        self.svc = self.service(
            [k8s.core.v1.ServicePortArgs(name="valkey", port=port, protocol="TCP")],
            cluster_ip=settings.nf("valkey").address,
        )
        # Only its clients (components/interfaces.py) that this stack deploys.
        self.clients = [
            c for c in valkey_clients() if c in DEPLOYED_NFS or (c == "cgrates" and settings.charging.enabled)
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
        self.register_outputs(
            {"address": self.address, "statefulSet": self.statefulset.metadata.name, "claim": self.claim.metadata.name}
        )

"""open5gs as HSS, PCRF and PGW, their MongoDB, and the subscribers declared in stack config.

- `SubscriberDb` (`ims:open5gs:SubscriberDb`): MongoDB from the official image, a StatefulSet
  with its data on the claim `data-mongodb-0` (sized by `mongodbStorage`, grows in place, a
  shrink fails the preview: components/stateful.py), auth on (the password from the
  `mongodbPassword` secret), a NetworkPolicy that admits only the HSS, the PCRF and the
  provisioning Job. Its `uri_secret` holds the
  client URI with the password, for DB_URI / MONGODB_URI.
- `SubscriberProvisioning` (`ims:open5gs:SubscriberProvisioning`): a Job that runs
  config/open5gs/provision.py on the declared subscribers (a Secret: K and OPc). Both the
  Secret and the Job are autonamed, so a change of the declared set replaces them and the Job
  runs again; nothing else changes.
- `Hss`, `Pcrf` (`ims:open5gs:Hss`, `ims:open5gs:Pcrf`): hssd / pcrfd with their rendered YAML
  and freeDiameter .conf, waiting for MongoDB first (hssd exits 0 when its database is
  unreachable at start), a Diameter Service and a NetworkPolicy admitting only their peers.
- `Pgw` (`ims:open5gs:Pgw`): smfd (PGW-C, Gx towards the PCRF) and upfd (PGW-U) in one pod,
  PFCP between them over the pod's loopback; an init container with NET_ADMIN alone creates the
  TUN devices (owned by the UPF's user, so upfd runs without any capability), addresses them
  and sets NAT for the internet APN.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from .base import DeployContext, NetworkFunctionComponent, config_volume, non_root_security_context, secret_volume
from .cscf import CLUSTER_DOMAIN
from .password import GeneratedPassword
from .render import open5gs as render_open5gs
from .render.kamailio import DIAMETER_PORT
from .stateful import DataStorage, single_instance_statefulset

MONGODB_UID = 999  # the official image's mongodb user
PROVISIONING = "subscriber-provisioning"
# Pods that talk to MongoDB.
MONGODB_CLIENTS = ("hss", "pcrf", PROVISIONING)


def _env_from_secret(name: str, secret: pulumi.Input[str], key: str) -> k8s.core.v1.EnvVarArgs:
    return k8s.core.v1.EnvVarArgs(
        name=name,
        value_from=k8s.core.v1.EnvVarSourceArgs(secret_key_ref=k8s.core.v1.SecretKeySelectorArgs(name=secret, key=key)),
    )


def ims_dns(ctx: DeployContext) -> dict:
    """freeDiameter resolves its peers' Diameter identities (the CSCFs' IMS FQDNs): through the
    IMS DNS, which forwards every other name (MongoDB's Service) to the cluster DNS."""
    if ctx.resolver is None:
        return {}
    return {
        "dns_policy": "None",
        "dns_config": k8s.core.v1.PodDNSConfigArgs(
            nameservers=[ctx.resolver],
            searches=[ctx.namespace.apply(lambda ns: f"{ns}.svc.{CLUSTER_DOMAIN}"), f"svc.{CLUSTER_DOMAIN}", CLUSTER_DOMAIN],
            options=[k8s.core.v1.PodDNSConfigOptionArgs(name="ndots", value="2")],
        ),
    }


def _small() -> k8s.core.v1.ResourceRequirementsArgs:
    return k8s.core.v1.ResourceRequirementsArgs(requests={"cpu": "10m", "memory": "16Mi"}, limits={"memory": "64Mi"})


class SubscriberDb(NetworkFunctionComponent):
    nf = "mongodb"
    component = "subscriber-database"

    def __init__(self, ctx: DeployContext, opts: pulumi.ResourceOptions | None = None):
        super().__init__("ims:open5gs:SubscriberDb", ctx, opts)
        settings = ctx.settings
        # No password in the stack config: the stack draws one and keeps it, secret, in its state.
        password = (
            pulumi.Output.from_input(settings.open5gs.mongodb_password)
            if settings.open5gs.mongodb_password
            else GeneratedPassword("mongodb-password", opts=pulumi.ResourceOptions(parent=self)).result
        )
        self.auth = self.secret("auth", password.apply(lambda p: {"username": render_open5gs.MONGODB_USER, "password": p}))
        self.uri_secret = self.secret("uri", password.apply(lambda p: {"uri": render_open5gs.mongodb_uri(settings, p)}))
        port = render_open5gs.MONGODB_PORT
        container = k8s.core.v1.ContainerArgs(
            name="mongodb",
            image=settings.images.mongodb,
            args=["--bind_ip_all", "--auth"],
            ports=[k8s.core.v1.ContainerPortArgs(name="mongodb", container_port=port)],
            env=[
                _env_from_secret("MONGO_INITDB_ROOT_USERNAME", self.auth.metadata.name, "username"),
                _env_from_secret("MONGO_INITDB_ROOT_PASSWORD", self.auth.metadata.name, "password"),
            ],
            resources=k8s.core.v1.ResourceRequirementsArgs(requests={"cpu": "100m", "memory": "256Mi"}, limits={"memory": "512Mi"}),
            security_context=non_root_security_context(MONGODB_UID),
            volume_mounts=[
                k8s.core.v1.VolumeMountArgs(name="data", mount_path="/data/db"),
                k8s.core.v1.VolumeMountArgs(name="tmp", mount_path="/tmp"),
                k8s.core.v1.VolumeMountArgs(name="configdb", mount_path="/data/configdb"),
            ],
            readiness_probe=k8s.core.v1.ProbeArgs(
                exec_=k8s.core.v1.ExecActionArgs(command=["mongosh", "--quiet", "--eval", "db.adminCommand('ping').ok"]),
                period_seconds=10,
                timeout_seconds=5,
            ),
        )
        self.instance = single_instance_statefulset(
            self,
            "mongodb",
            storage=DataStorage("mongodbStorage", settings.open5gs.mongodb_storage, "MongoDB volume claim"),
            labels=self.labels,
            selector=self.selector,
            containers=[container],
            volumes=[
                k8s.core.v1.VolumeArgs(name="tmp", empty_dir=k8s.core.v1.EmptyDirVolumeSourceArgs()),
                k8s.core.v1.VolumeArgs(name="configdb", empty_dir=k8s.core.v1.EmptyDirVolumeSourceArgs()),
            ],
            fs_group=MONGODB_UID,
        )
        self.statefulset, self.claim = self.instance.statefulset, self.instance.claim
        self.svc = self.service([k8s.core.v1.ServicePortArgs(name="mongodb", port=port, protocol="TCP")])
        self.policy = self.network_policy(
            [
                k8s.networking.v1.NetworkPolicyIngressRuleArgs(
                    ports=[k8s.networking.v1.NetworkPolicyPortArgs(port=port, protocol="TCP")],
                    from_=self.from_nfs(*MONGODB_CLIENTS),
                )
            ]
        )
        self.register_outputs(
            {
                "statefulSet": self.statefulset.metadata.name,
                "claim": self.claim.metadata.name,
                "uriSecret": self.uri_secret.metadata.name,
            }
        )


class SubscriberProvisioning(NetworkFunctionComponent):
    """The Job that upserts the declared subscribers and removes the ones no longer declared."""

    nf = PROVISIONING
    component = PROVISIONING

    def __init__(self, ctx: DeployContext, db: SubscriberDb, opts: pulumi.ResourceOptions | None = None):
        super().__init__("ims:open5gs:SubscriberProvisioning", ctx, opts)
        settings = ctx.settings
        self.script = self.config_map("script", {render_open5gs.PROVISION_SCRIPT: render_open5gs.provision_script()})
        self.subscribers = self.secret("subscribers", {"subscribers.json": render_open5gs.subscribers_json(settings)})
        container = k8s.core.v1.ContainerArgs(
            name="provision",
            image=ctx.images.reference("open5gs-provision"),
            command=["python3", f"/opt/provision/{render_open5gs.PROVISION_SCRIPT}", "/run/subscribers/subscribers.json"],
            env=[_env_from_secret("MONGODB_URI", db.uri_secret.metadata.name, "uri")],
            resources=k8s.core.v1.ResourceRequirementsArgs(requests={"cpu": "50m", "memory": "64Mi"}, limits={"memory": "128Mi"}),
            security_context=non_root_security_context(),
            volume_mounts=[
                k8s.core.v1.VolumeMountArgs(name="script", mount_path="/opt/provision", read_only=True),
                k8s.core.v1.VolumeMountArgs(name="subscribers", mount_path="/run/subscribers", read_only=True),
            ],
        )
        # Autonamed: the pod template is immutable, so a new subscriber set is a new Job.
        self.job = k8s.batch.v1.Job(
            f"{PROVISIONING}-job",
            metadata=self.metadata(),
            spec=k8s.batch.v1.JobSpecArgs(
                backoff_limit=6,
                template=k8s.core.v1.PodTemplateSpecArgs(
                    metadata=self.pod_metadata(),
                    spec=k8s.core.v1.PodSpecArgs(
                        containers=[container],
                        restart_policy="OnFailure",
                        volumes=[config_volume("script", self.script), secret_volume("subscribers", self.subscribers)],
                        security_context=k8s.core.v1.PodSecurityContextArgs(fs_group=65532),
                        enable_service_links=False,
                    ),
                ),
            ),
            opts=self.child_opts(depends_on=[db.statefulset]),
        )
        # The Job serves nothing: no ingress at all (the policy pack wants every workload covered).
        self.network_policy([])
        self.register_outputs({"job": self.job.metadata.name, "subscribers": len(settings.open5gs.subscribers)})


@dataclass(frozen=True)
class Open5gsArgs:
    """What the open5gs NFs need from the rest of the stack."""

    db: SubscriberDb
    # Addresses the SMF hands to UEs: the IMS DNS and the P-CSCF.
    ims_dns_address: pulumi.Input[str]
    pcscf_address: pulumi.Input[str]


class _Open5gsNf(NetworkFunctionComponent):
    """hssd or pcrfd: same shape, different peers."""

    daemon: str

    def __init__(self, type_token: str, ctx: DeployContext, args: Open5gsArgs, files: Mapping[str, str], opts=None):
        super().__init__(type_token, ctx, opts)
        self.config = self.config_map("config", {k.replace("/", "__"): v for k, v in files.items()})
        items = [k8s.core.v1.KeyToPathArgs(key=k.replace("/", "__"), path=k) for k in sorted(files)]
        volume = k8s.core.v1.VolumeArgs(
            name="config",
            config_map=k8s.core.v1.ConfigMapVolumeSourceArgs(name=self.config.metadata.name, items=items),
        )
        image = ctx.images.reference("open5gs")
        db_host = f"mongodb.{self.settings.namespace}.svc.cluster.local"
        wait = k8s.core.v1.ContainerArgs(
            name="wait-for-mongodb",
            image=image,
            command=[
                "sh",
                "-c",
                f'until nc -z -w 2 {db_host} {render_open5gs.MONGODB_PORT}; do echo "waiting for MongoDB at {db_host}"; sleep 2; done',
            ],
            security_context=non_root_security_context(),
            resources=_small(),
        )
        container = k8s.core.v1.ContainerArgs(
            name=self.daemon,
            image=image,
            command=[f"open5gs-{self.daemon}", "-c", f"{render_open5gs.CONFIG_DIR}/{self.nf}.yaml"],
            env=[_env_from_secret("DB_URI", args.db.uri_secret.metadata.name, "uri")],
            ports=[k8s.core.v1.ContainerPortArgs(name="diameter", container_port=DIAMETER_PORT, protocol="TCP")],
            resources=self.resources(),
            security_context=non_root_security_context(),
            volume_mounts=[k8s.core.v1.VolumeMountArgs(name="config", mount_path=render_open5gs.CONFIG_DIR, read_only=True)],
            # Ready when freeDiameter listens for its peers.
            readiness_probe=k8s.core.v1.ProbeArgs(
                tcp_socket=k8s.core.v1.TCPSocketActionArgs(port=DIAMETER_PORT), period_seconds=10
            ),
        )
        self.workload = self.deployment(
            k8s.core.v1.PodSpecArgs(
                init_containers=[wait], containers=[container], volumes=[volume], enable_service_links=False, **ims_dns(ctx)
            )
        )
        self.svc = self.service(
            [k8s.core.v1.ServicePortArgs(name="diameter", port=DIAMETER_PORT, protocol="TCP")],
            cluster_ip=self.settings.nf(self.nf).address,
        )
        peers = [role for role, _app in render_open5gs.DIAMETER_PEERS[self.nf]]
        if not self.settings.pcscf_rx and "pcscf" in peers:
            peers.remove("pcscf")
        self.network_policy(
            [
                k8s.networking.v1.NetworkPolicyIngressRuleArgs(
                    ports=[k8s.networking.v1.NetworkPolicyPortArgs(port=DIAMETER_PORT, protocol="TCP")],
                    from_=self.from_nfs(*peers),
                )
            ]
        )
        self.address = self.svc.spec.cluster_ip
        self.register_outputs({"address": self.address, "fqdn": self.settings.nf(self.nf).fqdn})


class Hss(_Open5gsNf):
    nf = "hss"
    component = "hss"
    daemon = "hssd"

    def __init__(self, ctx: DeployContext, args: Open5gsArgs, opts: pulumi.ResourceOptions | None = None):
        files = render_open5gs.render(ctx.settings, {"coredns": "", "pcscf": ""})["hss"]
        super().__init__("ims:open5gs:Hss", ctx, args, files, opts)


class Pcrf(_Open5gsNf):
    nf = "pcrf"
    component = "pcrf"
    daemon = "pcrfd"

    def __init__(self, ctx: DeployContext, args: Open5gsArgs, opts: pulumi.ResourceOptions | None = None):
        files = render_open5gs.render(ctx.settings, {"coredns": "", "pcscf": ""})["pcrf"]
        super().__init__("ims:open5gs:Pcrf", ctx, args, files, opts)


class Pgw(NetworkFunctionComponent):
    nf = "pgw"
    component = "pgw"

    def __init__(self, ctx: DeployContext, args: Open5gsArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("ims:open5gs:Pgw", ctx, opts)
        settings = ctx.settings
        files = pulumi.Output.all(coredns=args.ims_dns_address, pcscf=args.pcscf_address).apply(
            lambda a: {k.replace("/", "__"): v for k, v in render_open5gs.render(settings, dict(a))["pgw"].items()}
        )
        self.config = self.config_map("config", files)
        paths = ("smf.yaml", "upf.yaml", "freeDiameter/smf.conf", "upf-tun.sh")
        volume = k8s.core.v1.VolumeArgs(
            name="config",
            config_map=k8s.core.v1.ConfigMapVolumeSourceArgs(
                name=self.config.metadata.name,
                items=[k8s.core.v1.KeyToPathArgs(key=p.replace("/", "__"), path=p) for p in paths],
                default_mode=0o555,
            ),
        )
        tun = k8s.core.v1.VolumeArgs(
            name="dev-net-tun", host_path=k8s.core.v1.HostPathVolumeSourceArgs(path="/dev/net/tun", type="CharDevice")
        )
        image = ctx.images.reference("open5gs")
        mounts = [k8s.core.v1.VolumeMountArgs(name="config", mount_path=render_open5gs.CONFIG_DIR, read_only=True)]
        tun_mount = k8s.core.v1.VolumeMountArgs(name="dev-net-tun", mount_path="/dev/net/tun")
        setup = k8s.core.v1.ContainerArgs(
            name="upf-tun",
            image=image,
            command=["sh", f"{render_open5gs.CONFIG_DIR}/upf-tun.sh"],
            # Creating TUN devices, addresses and NAT rules: NET_ADMIN and nothing else.
            security_context=k8s.core.v1.SecurityContextArgs(
                run_as_user=0,
                run_as_non_root=False,
                allow_privilege_escalation=False,
                read_only_root_filesystem=True,
                capabilities=k8s.core.v1.CapabilitiesArgs(drop=["ALL"], add=["NET_ADMIN"]),
            ),
            resources=_small(),
            volume_mounts=[*mounts, tun_mount],
        )

        def daemon(name: str, extra_mounts, ports) -> k8s.core.v1.ContainerArgs:
            return k8s.core.v1.ContainerArgs(
                name=name,
                image=image,
                command=[f"open5gs-{name}d", "-c", f"{render_open5gs.CONFIG_DIR}/{name}.yaml"],
                ports=ports,
                resources=self.resources(),
                security_context=non_root_security_context(render_open5gs.UPF_UID),
                volume_mounts=[*mounts, *extra_mounts],
            )

        port = k8s.core.v1.ContainerPortArgs
        smf = daemon(
            "smf",
            [],
            [
                port(name="gtpc", container_port=render_open5gs.GTPC_PORT, protocol="UDP"),
                port(name="diameter", container_port=DIAMETER_PORT, protocol="TCP"),
            ],
        )
        upf = daemon("upf", [tun_mount], [port(name="gtpu", container_port=render_open5gs.GTPU_PORT, protocol="UDP")])
        self.workload = self.deployment(
            k8s.core.v1.PodSpecArgs(
                init_containers=[setup], containers=[smf, upf], volumes=[volume, tun], enable_service_links=False,
                **ims_dns(ctx),
            ),
            recreate=True,
        )
        self.svc = self.service(
            [
                k8s.core.v1.ServicePortArgs(name="gtpc", port=render_open5gs.GTPC_PORT, protocol="UDP"),
                k8s.core.v1.ServicePortArgs(name="gtpu", port=render_open5gs.GTPU_PORT, protocol="UDP"),
                k8s.core.v1.ServicePortArgs(name="diameter", port=DIAMETER_PORT, protocol="TCP"),
            ],
            cluster_ip=settings.nf("pgw").address,
        )
        rule = k8s.networking.v1.NetworkPolicyIngressRuleArgs
        policy_port = k8s.networking.v1.NetworkPolicyPortArgs
        self.network_policy(
            [
                # S5/S8 from the SGW (outside this stack) and user plane from the RAN side.
                rule(ports=[policy_port(port=render_open5gs.GTPC_PORT, protocol="UDP"), policy_port(port=render_open5gs.GTPU_PORT, protocol="UDP")]),
                # Gx: the PCRF's RAR on the connection it opens.
                rule(ports=[policy_port(port=DIAMETER_PORT, protocol="TCP")], from_=self.from_nfs("pcrf")),
            ]
        )
        self.address = self.svc.spec.cluster_ip
        self.register_outputs({"address": self.address, "fqdn": settings.nf("pgw").fqdn})

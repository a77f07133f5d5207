"""CGRateS, the online charging system: cgr-engine, its StorDB, and the Job that loads the plan.

- cgr-engine (`dockerfiles/cgrates`, distroless, non-root): one replica (it keeps live Ro
  sessions in memory), `Recreate`, the rendered cgrates.json in a ConfigMap and its two
  passwords from a Secret through the environment (`*env:` in the config). Its DataDB
  (accounts, balances, rating data) is Valkey database 3, whose AOF survives restarts.
- StorDB: PostgreSQL on its own volume (CDRs, tariff-plan staging tables), schema created by
  the image's init on first start (an empty data directory) from config/cgrates/postgres. The
  volume is the claim `data-cgrates-stordb-0`, sized by `cgratesStorDbStorage` (grows in place,
  a shrink fails the preview: components/stateful.py).
- Loader Job: runs config/cgrates/load_plan.py on the rendered plan through CGRateS' HTTP API.
  The plan lives in its own autonamed ConfigMap that only the Job reads, so a tariff or
  balance change replaces that ConfigMap and the Job and rolls no pod.
- NetworkPolicies: Ro (Diameter) only from the S-CSCF, the API only from the loader Job,
  PostgreSQL only from cgr-engine.
"""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s

from .base import NON_ROOT_UID, DeployContext, NetworkFunctionComponent, config_volume, non_root_security_context
from .naming import labels, selector
from .password import GeneratedPassword
from .render import cgrates as render_cgrates
from .stateful import DataStorage, single_instance_statefulset

STORDB = "cgrates-stordb"
LOADER = "cgrates-loader"
# The postgres image's postgres user (Alpine).
POSTGRES_UID = 70
CONFIG_DIR = "/etc/cgrates"
PLAN_DIR = "/plan"
# How long the loader waits for CGRateS' API (the engine waits for Valkey and PostgreSQL).
LOADER_WAIT_SECONDS = 300


class Cgrates(NetworkFunctionComponent):
    nf = "cgrates"
    component = "ocs"

    def __init__(self, ctx: DeployContext, opts: pulumi.ResourceOptions | None = None):
        super().__init__("ims:cgrates:Cgrates", ctx, opts)
        settings = ctx.settings
        self.config = self.config_map("config", {"cgrates.json": render_cgrates.cgrates_json(settings)})
        # The StorDB password: the configured secret, or one the stack draws and keeps.
        stordb_password = settings.cgrates_stordb_password or GeneratedPassword(
            "cgrates-stordb-password", opts=self.child_opts()
        ).result
        self.secrets = self.secret(
            "auth",
            pulumi.Output.all(ctx.valkey_password, stordb_password).apply(
                lambda pw: {"valkey-password": pw[0], "stordb-password": pw[1]}
            ),
        )
        self.stordb = self._stordb()
        self.deployment = self.deployment(self._engine_pod(), recreate=True)
        api, diameter = render_cgrates.API_PORT, render_cgrates.DIAMETER_PORT
        self.svc = self.service(
            [
                k8s.core.v1.ServicePortArgs(name="diameter", port=diameter, protocol="TCP"),
                k8s.core.v1.ServicePortArgs(name="api", port=api, protocol="TCP"),
            ],
            cluster_ip=settings.nf("cgrates").address,
        )
        loader_pods = k8s.networking.v1.NetworkPolicyPeerArgs(
            pod_selector=k8s.meta.v1.LabelSelectorArgs(match_labels=selector(settings, LOADER))
        )
        self.policy = self.network_policy(
            [
                k8s.networking.v1.NetworkPolicyIngressRuleArgs(
                    ports=[k8s.networking.v1.NetworkPolicyPortArgs(port=diameter, protocol="TCP")],
                    from_=self.from_nfs("scscf"),
                ),
                k8s.networking.v1.NetworkPolicyIngressRuleArgs(
                    ports=[k8s.networking.v1.NetworkPolicyPortArgs(port=api, protocol="TCP")], from_=[loader_pods]
                ),
            ]
        )
        self.loader = self._loader()
        self.address = self.svc.spec.cluster_ip
        self.register_outputs(
            {"address": self.address, "deployment": self.deployment.metadata.name, "loaderJob": self.loader.metadata.name}
        )

    def _secret_env(self, name: str, key: str) -> k8s.core.v1.EnvVarArgs:
        return k8s.core.v1.EnvVarArgs(
            name=name,
            value_from=k8s.core.v1.EnvVarSourceArgs(
                secret_key_ref=k8s.core.v1.SecretKeySelectorArgs(name=self.secrets.metadata.name, key=key)
            ),
        )

    def _engine_pod(self) -> k8s.core.v1.PodSpecArgs:
        diameter = render_cgrates.DIAMETER_PORT
        container = k8s.core.v1.ContainerArgs(
            name="cgr-engine",
            image=self.ctx.images.reference("cgrates"),
            ports=[
                k8s.core.v1.ContainerPortArgs(name="diameter", container_port=diameter),
                k8s.core.v1.ContainerPortArgs(name="api", container_port=render_cgrates.API_PORT),
            ],
            env=[
                self._secret_env(render_cgrates.VALKEY_PASSWORD_ENV, "valkey-password"),
                self._secret_env(render_cgrates.STORDB_PASSWORD_ENV, "stordb-password"),
            ],
            resources=self.resources(),
            security_context=non_root_security_context(NON_ROOT_UID),
            volume_mounts=[k8s.core.v1.VolumeMountArgs(name="config", mount_path=CONFIG_DIR, read_only=True)],
            # The Diameter agent listens only once the engine has its databases: the S-CSCF's
            # Ro peer can connect. Distroless has no shell for an exec probe.
            readiness_probe=k8s.core.v1.ProbeArgs(
                tcp_socket=k8s.core.v1.TCPSocketActionArgs(port=diameter), period_seconds=5
            ),
            liveness_probe=k8s.core.v1.ProbeArgs(
                tcp_socket=k8s.core.v1.TCPSocketActionArgs(port=render_cgrates.API_PORT),
                initial_delay_seconds=20,
                period_seconds=20,
            ),
        )
        return k8s.core.v1.PodSpecArgs(
            containers=[container], volumes=[config_volume("config", self.config)], enable_service_links=False
        )

    def _stordb(self) -> k8s.apps.v1.StatefulSet:
        settings, deployment = self.settings, self.settings.cgrates
        stordb_labels = labels(settings, STORDB, "ocs-stordb")
        schema = self.config_map(
            "stordb-schema",
            {f"{n:02d}-{name}": sql for n, (name, sql) in enumerate(render_cgrates.stordb_schema().items(), start=1)},
        )
        port = render_cgrates.STORDB_PORT
        user, db = render_cgrates.STORDB_USER, render_cgrates.STORDB_NAME
        container = k8s.core.v1.ContainerArgs(
            name="postgres",
            image=deployment.stordb_image,
            ports=[k8s.core.v1.ContainerPortArgs(name="postgres", container_port=port)],
            env=[
                k8s.core.v1.EnvVarArgs(name="POSTGRES_USER", value=user),
                k8s.core.v1.EnvVarArgs(name="POSTGRES_DB", value=db),
                k8s.core.v1.EnvVarArgs(name="PGDATA", value="/var/lib/postgresql/data/pgdata"),
                self._secret_env("POSTGRES_PASSWORD", "stordb-password"),
            ],
            security_context=k8s.core.v1.SecurityContextArgs(
                run_as_non_root=True, run_as_user=POSTGRES_UID, run_as_group=POSTGRES_UID,
                allow_privilege_escalation=False, capabilities=k8s.core.v1.CapabilitiesArgs(drop=["ALL"]),
            ),
            volume_mounts=[
                k8s.core.v1.VolumeMountArgs(name="data", mount_path="/var/lib/postgresql/data"),
                k8s.core.v1.VolumeMountArgs(name="schema", mount_path="/docker-entrypoint-initdb.d", read_only=True),
                k8s.core.v1.VolumeMountArgs(name="run", mount_path="/var/run/postgresql"),
            ],
            readiness_probe=k8s.core.v1.ProbeArgs(
                exec_=k8s.core.v1.ExecActionArgs(command=["pg_isready", "-U", user, "-d", db, "-h", "127.0.0.1"]),
                period_seconds=5,
            ),
        )
        self.stordb_svc = k8s.core.v1.Service(
            f"{STORDB}-service",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=STORDB, namespace=self.ctx.namespace, labels=stordb_labels),
            spec=k8s.core.v1.ServiceSpecArgs(
                selector=selector(settings, STORDB),
                ports=[k8s.core.v1.ServicePortArgs(name="postgres", port=port, protocol="TCP")],
            ),
            opts=self.child_opts(),
        )
        self.stordb_policy = k8s.networking.v1.NetworkPolicy(
            f"{STORDB}-ingress",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=f"{STORDB}-ingress", namespace=self.ctx.namespace, labels=stordb_labels),
            spec=k8s.networking.v1.NetworkPolicySpecArgs(
                pod_selector=k8s.meta.v1.LabelSelectorArgs(match_labels=selector(settings, STORDB)),
                policy_types=["Ingress"],
                ingress=[k8s.networking.v1.NetworkPolicyIngressRuleArgs(
                    ports=[k8s.networking.v1.NetworkPolicyPortArgs(port=port, protocol="TCP")],
                    from_=self.from_nfs("cgrates"),
                )],
            ),
            opts=self.child_opts(),
        )
        self.stordb_instance = single_instance_statefulset(
            self,
            STORDB,
            storage=DataStorage("cgratesStorDbStorage", deployment.stordb_storage, "CGRateS StorDB volume claim"),
            labels=stordb_labels,
            selector=selector(settings, STORDB),
            containers=[container],
            volumes=[
                config_volume("schema", schema),
                k8s.core.v1.VolumeArgs(name="run", empty_dir=k8s.core.v1.EmptyDirVolumeSourceArgs()),
            ],
            fs_group=POSTGRES_UID,
        )
        return self.stordb_instance.statefulset

    def _loader(self) -> k8s.batch.v1.Job:
        """The Job that loads the plan; autonamed, so a new plan is a new Job."""
        settings = self.settings
        plan = self.config_map(
            "plan",
            {"plan.json": render_cgrates.plan_json(settings),
             "load_plan.py": render_cgrates.LOADER_SCRIPT.read_text(encoding="utf-8")},
        )
        url = f"http://{self.nf}:{render_cgrates.API_PORT}/jsonrpc"
        loader_labels = labels(settings, LOADER, "ocs-loader")
        container = k8s.core.v1.ContainerArgs(
            name="load-plan",
            image=settings.cgrates.loader_image,
            command=["python3", f"{PLAN_DIR}/load_plan.py", f"{PLAN_DIR}/plan.json", url,
                     "--wait", str(LOADER_WAIT_SECONDS)],
            security_context=non_root_security_context(NON_ROOT_UID),
            volume_mounts=[k8s.core.v1.VolumeMountArgs(name="plan", mount_path=PLAN_DIR, read_only=True)],
            resources=k8s.core.v1.ResourceRequirementsArgs(requests={"cpu": "50m", "memory": "64Mi"},
                                                           limits={"memory": "64Mi"}),
        )
        return k8s.batch.v1.Job(
            LOADER,
            metadata=k8s.meta.v1.ObjectMetaArgs(namespace=self.ctx.namespace, labels=loader_labels),
            spec=k8s.batch.v1.JobSpecArgs(
                backoff_limit=4,
                template=k8s.core.v1.PodTemplateSpecArgs(
                    metadata=k8s.meta.v1.ObjectMetaArgs(labels=loader_labels),
                    spec=k8s.core.v1.PodSpecArgs(
                        containers=[container],
                        restart_policy="OnFailure",
                        volumes=[config_volume("plan", plan)],
                        enable_service_links=False,
                    ),
                ),
            ),
            opts=self.child_opts(depends_on=[self.deployment]),
        )

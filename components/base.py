"""The shape every network-function component follows, and the pieces they share.

A component is `ims:<area>:<Name>`, its children are created with `parent=self` (so they inherit
the explicit Kubernetes provider), its objects carry the app.kubernetes.io/* labels, and it
registers its real outputs. ConfigMaps and Secrets are autonamed: a content change replaces
them under a new name, which changes the pod template and rolls the pods that read them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from .images import ImagePipeline
from .naming import labels, selector
from .settings import Settings

# Pods of ours that need no privilege run as this user, with nothing added.
NON_ROOT_UID = 65532


@dataclass(frozen=True)
class DeployContext:
    """What every component needs from the stack: settings, provider, namespace, images."""

    settings: Settings
    provider: k8s.Provider
    namespace: pulumi.Output[str]
    images: ImagePipeline
    # The IMS DNS address: pods that resolve IMS/EPC names at start-up (Kamailio) use it.
    resolver: pulumi.Output[str] | None = None
    # Name of the Secret that holds the Valkey password (key "password"), for Valkey's clients.
    valkey_secret: pulumi.Output[str] | None = None
    # The Valkey password: the configured secret, or the one the stack generated.
    valkey_password: pulumi.Input[str] | None = None


class NetworkFunctionComponent(pulumi.ComponentResource):
    """Base of every NF component; `nf` is the NF's name in settings (pcscf, valkey, ...)."""

    nf: str
    component: str

    def __init__(self, type_token: str, ctx: DeployContext, opts: pulumi.ResourceOptions | None = None):
        super().__init__(
            type_token,
            self.nf,
            None,
            pulumi.ResourceOptions.merge(pulumi.ResourceOptions(provider=ctx.provider), opts),
        )
        self.ctx = ctx
        self.settings = ctx.settings
        self.labels = labels(ctx.settings, self.nf, self.component)
        self.selector = selector(ctx.settings, self.nf)

    # --- children ------------------------------------------------------------------------

    def child_opts(self, **kwargs) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=self, **kwargs)

    def metadata(self, name: str | None = None, **extra) -> k8s.meta.v1.ObjectMetaArgs:
        return k8s.meta.v1.ObjectMetaArgs(name=name, namespace=self.ctx.namespace, labels=self.labels, **extra)

    def config_map(self, suffix: str, files: pulumi.Input[Mapping[str, str]]) -> k8s.core.v1.ConfigMap:
        """Autonamed ConfigMap `<nf>-<suffix>-xxxxx` with the rendered files."""
        return k8s.core.v1.ConfigMap(
            f"{self.nf}-{suffix}",
            metadata=self.metadata(),
            data=files,
            opts=self.child_opts(),
        )

    def secret(self, suffix: str, files: pulumi.Input[Mapping[str, str]]) -> k8s.core.v1.Secret:
        """Autonamed Secret; the values stay Pulumi secrets in state and previews."""
        return k8s.core.v1.Secret(
            f"{self.nf}-{suffix}",
            metadata=self.metadata(),
            type="Opaque",
            string_data=pulumi.Output.secret(files),
            opts=self.child_opts(),
        )

    def service(
        self,
        ports: Sequence[k8s.core.v1.ServicePortArgs],
        *,
        cluster_ip: str | None = None,
        headless: bool = False,
    ) -> k8s.core.v1.Service:
        """The NF's Service, named after the NF so `<nf>.<namespace>.svc` is stable.

        Not awaited: Pulumi's await for a Service lasts until it selects Ready pods, and only then
        are its outputs (the ClusterIP) known. The IMS DNS zone needs the CSCFs' ClusterIPs, while
        the CSCF pods wait for the IMS DNS in an init container, so awaiting the Services can
        deadlock `pulumi up` (it did, now and then, on the node tier: whether the provider sees a
        selected pod before its await settles is a race). The workloads' own awaits still wait
        for Ready pods."""
        return k8s.core.v1.Service(
            f"{self.nf}-service",
            metadata=self.metadata(self.nf, annotations={"pulumi.com/skipAwait": "true"}),
            spec=k8s.core.v1.ServiceSpecArgs(
                selector=self.selector,
                ports=list(ports),
                cluster_ip="None" if headless else cluster_ip,
                type="ClusterIP",
            ),
            # A fixed ClusterIP cannot change in place; the name is fixed too, so delete first.
            opts=self.child_opts(delete_before_replace=True),
        )

    def network_policy(
        self, ingress: Sequence[k8s.networking.v1.NetworkPolicyIngressRuleArgs]
    ) -> k8s.networking.v1.NetworkPolicy:
        """Admit only the listed ingress into this NF's pods (everything else is denied)."""
        return k8s.networking.v1.NetworkPolicy(
            f"{self.nf}-ingress",
            metadata=self.metadata(f"{self.nf}-ingress"),
            spec=k8s.networking.v1.NetworkPolicySpecArgs(
                pod_selector=k8s.meta.v1.LabelSelectorArgs(match_labels=self.selector),
                policy_types=["Ingress"],
                ingress=list(ingress),
            ),
            opts=self.child_opts(),
        )

    def from_nfs(self, *nfs: str) -> list[k8s.networking.v1.NetworkPolicyPeerArgs]:
        """NetworkPolicy peers: the pods of the named NFs of this stack."""
        return [
            k8s.networking.v1.NetworkPolicyPeerArgs(
                pod_selector=k8s.meta.v1.LabelSelectorArgs(match_labels=selector(self.settings, nf))
            )
            for nf in nfs
        ]

    # --- availability (node drains, zone loss) ---------------------------------------------

    def disruption_budget(self, *, max_unavailable: int) -> k8s.policy.v1.PodDisruptionBudget:
        """How many of this NF's pods a voluntary disruption (a node drain) may take at once.
        A pod that is not running anyway may always be evicted, so a broken pod never blocks
        a drain."""
        return k8s.policy.v1.PodDisruptionBudget(
            f"{self.nf}-disruption-budget",
            metadata=self.metadata(self.nf),
            spec=k8s.policy.v1.PodDisruptionBudgetSpecArgs(
                max_unavailable=max_unavailable,
                selector=k8s.meta.v1.LabelSelectorArgs(match_labels=self.selector),
                unhealthy_pod_eviction_policy="AlwaysAllow",
            ),
            opts=self.child_opts(),
        )

    def spread(self) -> list[k8s.core.v1.TopologySpreadConstraintArgs]:
        """This NF's pods on different nodes (a must) and zones (where the cluster has them)."""
        return [
            k8s.core.v1.TopologySpreadConstraintArgs(
                max_skew=1,
                topology_key=key,
                when_unsatisfiable=when,
                label_selector=k8s.meta.v1.LabelSelectorArgs(match_labels=self.selector),
                match_label_keys=["pod-template-hash"],
            )
            for key, when in (
                ("kubernetes.io/hostname", "DoNotSchedule"),
                ("topology.kubernetes.io/zone", "ScheduleAnyway"),
            )
        ]

    def resources(self) -> k8s.core.v1.ResourceRequirementsArgs:
        r = self.settings.nf(self.nf).resources
        assert r is not None, f"{self.nf} is not deployed by this stack"
        return k8s.core.v1.ResourceRequirementsArgs(
            requests={"cpu": r.cpu, "memory": r.memory},
            limits={"memory": r.memory},
        )

    def pod_metadata(self) -> k8s.meta.v1.ObjectMetaArgs:
        return k8s.meta.v1.ObjectMetaArgs(labels=self.labels)

    def deployment(
        self,
        pod_spec: k8s.core.v1.PodSpecArgs,
        *,
        recreate: bool = False,
    ) -> k8s.apps.v1.Deployment:
        """The NF's Deployment; `recreate` for pods bound to host ports (no surge possible)."""
        return k8s.apps.v1.Deployment(
            f"{self.nf}-deployment",
            metadata=self.metadata(self.nf),
            spec=k8s.apps.v1.DeploymentSpecArgs(
                replicas=self.settings.nf(self.nf).replicas,
                selector=k8s.meta.v1.LabelSelectorArgs(match_labels=self.selector),
                strategy=k8s.apps.v1.DeploymentStrategyArgs(type="Recreate") if recreate else None,
                template=k8s.core.v1.PodTemplateSpecArgs(metadata=self.pod_metadata(), spec=pod_spec),
            ),
            opts=self.child_opts(),
        )


def non_root_security_context(uid: int = NON_ROOT_UID) -> k8s.core.v1.SecurityContextArgs:
    """Non-root, no privilege escalation, read-only root filesystem, every capability dropped."""
    return k8s.core.v1.SecurityContextArgs(
        run_as_non_root=True,
        run_as_user=uid,
        run_as_group=uid,
        allow_privilege_escalation=False,
        read_only_root_filesystem=True,
        capabilities=k8s.core.v1.CapabilitiesArgs(drop=["ALL"]),
    )


def config_volume(name: str, config_map: k8s.core.v1.ConfigMap) -> k8s.core.v1.VolumeArgs:
    return k8s.core.v1.VolumeArgs(
        name=name, config_map=k8s.core.v1.ConfigMapVolumeSourceArgs(name=config_map.metadata.name)
    )


def secret_volume(name: str, secret: k8s.core.v1.Secret) -> k8s.core.v1.VolumeArgs:
    return k8s.core.v1.VolumeArgs(
        name=name,
        secret=k8s.core.v1.SecretVolumeSourceArgs(secret_name=secret.metadata.name, default_mode=0o440),
    )

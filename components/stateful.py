"""One pod with its data on one volume: the StatefulSet shape of Valkey, MongoDB and the StorDB.

The data claim is a resource of its own, not a volumeClaimTemplate. The API server refuses any
change to a StatefulSet's templates, and a StatefulSet replaced for one keeps the claim the old
template made, at its old size: the size setting did nothing. A claim of its own grows in place
when its size setting grows (where the StorageClass has `allowVolumeExpansion`; otherwise the
API server refuses the update and says so), and a smaller size fails the preview with a message
that names the setting (components/volume_size.py), before anything changes.

The claim keeps the name the template gave it, `data-<statefulset>-0`: a stack deployed with the
template adopts its claim, bound volume and data on upgrade. The StatefulSet is replaced (its
templates changed), the retained claim is taken over by the new resource (pulumi-kubernetes
4.25 creates with server-side apply, which updates an object that exists), and the new pod
mounts it by name. pulumi-kubernetes 4.29 and later refuse to create over an existing object
unless the provider sets `upsertExistingObjects`: an upgrade of the provider must set it, or
the first `pulumi up` of an old stack stops (nothing is lost, the claim stays).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi_kubernetes as k8s

from .base import NetworkFunctionComponent
from .volume_size import GrowOnlySize

# The volume's name in the pod, and the name the former volumeClaimTemplate had.
DATA_VOLUME = "data"


def data_claim_name(statefulset: str) -> str:
    """The claim a volumeClaimTemplate "data" made for pod 0 of the StatefulSet."""
    return f"{DATA_VOLUME}-{statefulset}-0"


@dataclass(frozen=True)
class DataStorage:
    """The size of a data volume and the setting it comes from (for the shrink error)."""

    key: str  # the stack setting, e.g. mongodbStorage
    size: str  # a Kubernetes quantity
    what: str  # how the error names the claim, e.g. "MongoDB volume claim"


@dataclass(frozen=True)
class SingleInstance:
    """What `single_instance_statefulset` made."""

    statefulset: k8s.apps.v1.StatefulSet
    claim: k8s.core.v1.PersistentVolumeClaim
    guard: GrowOnlySize


def single_instance_statefulset(
    owner: NetworkFunctionComponent,
    name: str,
    *,
    storage: DataStorage,
    labels: Mapping[str, str],
    selector: Mapping[str, str],
    containers: Sequence[k8s.core.v1.ContainerArgs],
    volumes: Sequence[k8s.core.v1.VolumeArgs],
    fs_group: int,
) -> SingleInstance:
    """StatefulSet `name` (service name `name`, one replica) whose containers mount the volume
    "data": the claim `data-<name>-0`, sized by `storage`. Pulumi names: `<name>-statefulset`,
    `<name>-data`, `<name>-storage-size` (those of existing stacks: keep them)."""
    namespace = owner.ctx.namespace
    guard = GrowOnlySize(
        f"{name}-storage-size",
        key=storage.key,
        size=storage.size,
        what=storage.what,
        opts=owner.child_opts(),
    )
    claim = k8s.core.v1.PersistentVolumeClaim(
        f"{name}-data",
        metadata=k8s.meta.v1.ObjectMetaArgs(
            name=data_claim_name(name),
            namespace=namespace,
            labels=dict(labels),
            annotations={
                # A claim of a WaitForFirstConsumer class (kind's default) binds only once the
                # pod is scheduled, after this resource: do not wait for Bound here; the
                # StatefulSet's readiness says the volume is mounted.
                "pulumi.com/skipAwait": "true",
                # A claim the StatefulSet controller made (a stack from the template days) has
                # its size owned by kube-controller-manager: server-side apply refuses another
                # size from us as a conflict. The claim is this stack's: take the fields we set.
                "pulumi.com/patchForce": "true",
            },
        ),
        spec=k8s.core.v1.PersistentVolumeClaimSpecArgs(
            access_modes=["ReadWriteOnce"],
            resources=k8s.core.v1.VolumeResourceRequirementsArgs(requests={"storage": storage.size}),
        ),
        opts=owner.child_opts(depends_on=[guard]),
    )
    data = k8s.core.v1.VolumeArgs(
        name=DATA_VOLUME,
        persistent_volume_claim=k8s.core.v1.PersistentVolumeClaimVolumeSourceArgs(claim_name=claim.metadata.name),
    )
    statefulset = k8s.apps.v1.StatefulSet(
        f"{name}-statefulset",
        metadata=k8s.meta.v1.ObjectMetaArgs(name=name, namespace=namespace, labels=dict(labels)),
        spec=k8s.apps.v1.StatefulSetSpecArgs(
            service_name=name,
            replicas=1,
            selector=k8s.meta.v1.LabelSelectorArgs(match_labels=dict(selector)),
            template=k8s.core.v1.PodTemplateSpecArgs(
                metadata=k8s.meta.v1.ObjectMetaArgs(labels=dict(labels)),
                spec=k8s.core.v1.PodSpecArgs(
                    containers=list(containers),
                    security_context=k8s.core.v1.PodSecurityContextArgs(fs_group=fs_group),
                    volumes=[*volumes, data],
                    enable_service_links=False,
                ),
            ),
        ),
        opts=owner.child_opts(),
    )
    return SingleInstance(statefulset=statefulset, claim=claim, guard=guard)


"""A size setting that may grow but never shrink: checked at preview, against the last deploy.

Kubernetes expands a bound PersistentVolumeClaim in place when its StorageClass allows it
(`allowVolumeExpansion`) and refuses to shrink one. The program cannot see the claim's current
size, but the engine hands a resource's previous inputs to its provider's `check`: this small
dynamic resource records the size of each deploy and fails the preview of a smaller one with a
message that names the setting, before anything changes.
"""

from __future__ import annotations

import pulumi
from pulumi.dynamic import CheckFailure, CheckResult, CreateResult, DiffResult, Resource, ResourceProvider, UpdateResult

from .render.valkey import quantity_bytes


class GrowOnlySizeProvider(ResourceProvider):
    """Keep the name: state of existing stacks refers to this class to delete or diff."""

    def check(self, olds, news):
        old, new = olds.get("size"), news.get("size")
        failures = []
        if old and new and quantity_bytes(str(new)) < quantity_bytes(str(old)):
            failures.append(
                CheckFailure(
                    "size",
                    f"{news.get('key')} = {new!r}: smaller than the {old} the {news.get('what')} already has; "
                    f"Kubernetes cannot shrink a volume: keep {old} or more",
                )
            )
        return CheckResult(news, failures)

    def create(self, props):
        return CreateResult(id_=f"{props['key']}", outs=props)

    def diff(self, _id, olds, news):
        return DiffResult(changes=any(olds.get(k) != news.get(k) for k in ("size", "key", "what")))

    def update(self, _id, _olds, news):
        return UpdateResult(outs=news)


class GrowOnlySize(Resource):
    size: pulumi.Output[str]

    def __init__(self, name: str, *, key: str, size: str, what: str, opts: pulumi.ResourceOptions | None = None):
        super().__init__(GrowOnlySizeProvider(), name, {"key": key, "size": size, "what": what}, opts)

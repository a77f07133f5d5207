"""Pulumi mocks for the unit tier: the program runs with no CLI and no cluster."""

from __future__ import annotations

import hashlib
import json
import runpy
from dataclasses import dataclass, field

import pulumi
import pytest

from components.settings import SECRET_KEYS
from tests.tooling import ROOT

# Keys every test stack sets, unless a test asks for base=False (then the stack generates the
# Valkey password, as the dev stack does).
BASE_CONFIG = {"valkeyPassword": "unit-test-password-0123", "mongodbPassword": "unit-test-mongodb-0123"}
# What the mocks hand back as the generated Valkey password (the real one is drawn at create).
GENERATED_PASSWORD = "mock-generated-password-0123456789"


def _stable_hash(value) -> str:
    return hashlib.sha1(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:8]


class RecordingMocks(pulumi.runtime.Mocks):
    """Records every registered resource; fakes what the engine and providers would add."""

    def __init__(self):
        self.resources: list[pulumi.runtime.MockResourceArgs] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        self.resources.append(args)
        outputs = dict(args.inputs)
        if args.typ.startswith("kubernetes:") and args.typ != "pulumi:providers:kubernetes":
            metadata = dict(outputs.get("metadata") or {})
            if not metadata.get("name"):
                # Like Pulumi autonaming: a new name when the object is replaced (new content).
                metadata["name"] = f"{args.name}-{_stable_hash(outputs.get('data') or outputs.get('stringData') or {})}"
            outputs["metadata"] = metadata
        if args.typ == "kubernetes:core/v1:Service":
            spec = dict(outputs.get("spec") or {})
            if not spec.get("clusterIP"):
                # Derived from the name, not from registration order (which varies between
                # runs), so the same stack gets the same addresses every time.
                digest = int(_stable_hash(args.name), 16)
                spec["clusterIP"] = f"10.96.{digest % 200}.{digest // 200 % 250 + 1}"
            outputs["spec"] = spec
        if args.typ == "pulumi-python:dynamic:Resource" and "length" in args.inputs:
            outputs["result"] = GENERATED_PASSWORD
        if args.typ == "docker:index/image:Image":
            outputs["repoDigest"] = f"{args.inputs['imageName'].rsplit(':', 1)[0]}@sha256:{'ab' * 32}"
        return [f"{args.name}_id", outputs]

    def call(self, args: pulumi.runtime.MockCallArgs):
        return {}

    # --- queries used by the tests ------------------------------------------------------

    def of_type(self, typ: str) -> list[pulumi.runtime.MockResourceArgs]:
        return [r for r in self.resources if r.typ == typ]

    def named(self, name: str) -> pulumi.runtime.MockResourceArgs:
        matches = [r for r in self.resources if r.name == name]
        assert len(matches) == 1, f"expected one resource named {name!r}, got {[r.name for r in matches]}"
        return matches[0]


@dataclass
class Run:
    mocks: RecordingMocks
    outputs: dict = field(default_factory=dict)
    error: Exception | None = None

    @property
    def resources(self):
        return self.mocks.resources


def run_program(
    config: dict | None = None, *, stack: str = "dev", base: bool = True, plain_text: tuple[str, ...] = ()
) -> Run:
    """Run __main__.py under mocks with the given stack config (keys without the project prefix).

    Keys settings want secret are given as `pulumi config set --secret` would, unless named in
    `plain_text` (set without --secret)."""
    values = {**(BASE_CONFIG if base else {}), **(config or {})}
    mocks = RecordingMocks()
    pulumi.runtime.set_mocks(mocks, project="ims-core", stack=stack, preview=False)
    pulumi.runtime.set_all_config(
        {f"ims-core:{k}": v if isinstance(v, str) else json.dumps(v) for k, v in values.items()},
        # As `pulumi config set --secret` leaves them (subscribers: K and OPc set with --secret --path).
        [f"ims-core:{k}" for k in SECRET_KEYS if k in values and k not in plain_text],
    )
    exported: dict = {}
    original_export = pulumi.export
    run = Run(mocks=mocks, outputs=exported)

    def record_export(name, value):
        exported[name] = value

    @pulumi.runtime.test
    def program():
        pulumi.export = record_export
        try:
            runpy.run_path(str(ROOT / "__main__.py"), run_name="__main__")
        except pulumi.RunError as error:
            run.error = error
        finally:
            pulumi.export = original_export

    program()
    return run


@pytest.fixture(scope="module")
def dev_run() -> Run:
    """The dev stack as Pulumi.dev.yaml configures it."""
    import yaml

    dev = yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())["config"]
    config = {k.split(":", 1)[1]: v for k, v in dev.items()}
    run = run_program(config, base=False)
    assert run.error is None, run.error
    return run


def resolve(value):
    """The value of an Output after a mocked run."""
    from pulumi.runtime.sync_await import _sync_await

    return _sync_await(pulumi.Output.from_input(value).future())


def pod_spec(resource) -> dict:
    return resource.inputs["spec"]["template"]["spec"]


def container(resource) -> dict:
    return pod_spec(resource)["containers"][0]

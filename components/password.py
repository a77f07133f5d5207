"""A password the stack generates once and keeps in its state, so no stack config holds it.

Pulumi's random provider would do this, but its plugin cannot be built from the Go module
proxy; a dynamic provider runs in the program's own Python (the CLI ships the small
`pulumi-resource-pulumi-python` plugin that starts it). The password is drawn once, at create,
stored as a secret output and never changes on later updates; a new `length`, or
`pulumi up --replace <urn>`, draws a new one (and rolls every pod that reads it).
"""

from __future__ import annotations

import secrets
import string

import pulumi
from pulumi.dynamic import CheckFailure, CheckResult, CreateResult, DiffResult, Resource, ResourceProvider

# Characters every client takes in a URL and a config file unquoted (settings forbid : @ / # ...).
ALPHABET = string.ascii_letters + string.digits
MIN_LENGTH = 16


class GeneratedPasswordProvider(ResourceProvider):
    """Keep the name: state of existing stacks refers to this class to delete or diff."""

    def check(self, _olds, news):
        length = news.get("length")
        failures = []
        if not isinstance(length, int | float) or int(length) < MIN_LENGTH:
            failures.append(CheckFailure("length", f"length = {length!r}: must be at least {MIN_LENGTH}"))
        return CheckResult(news, failures)

    def create(self, props):
        value = "".join(secrets.choice(ALPHABET) for _ in range(int(props["length"])))
        return CreateResult(id_=secrets.token_hex(8), outs={**props, "result": value})

    def diff(self, _id, olds, news):
        # A new provider blob (our code changed) is no reason to draw a new password.
        keys = [k for k in ("length",) if olds.get(k) != news.get(k)]
        return DiffResult(changes=bool(keys), replaces=keys, delete_before_replace=False)


class GeneratedPassword(Resource):
    """`result` is the password, a secret Output."""

    result: pulumi.Output[str]

    def __init__(self, name: str, length: int = 32, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(
            GeneratedPasswordProvider(),
            name,
            {"length": length, "result": None},
            pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(additional_secret_outputs=["result"])),
        )

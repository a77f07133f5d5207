"""Names and labels shared by every component, spelled one way everywhere."""

from __future__ import annotations

from .settings import Settings

PART_OF = "ims-core"


def labels(settings: Settings, nf: str, component: str) -> dict[str, str]:
    """The app.kubernetes.io/* labels of an NF's objects.

    `component` is the 3GPP role (e.g. "pcscf", "ims-dns", "media-relay").
    """
    return {
        "app.kubernetes.io/name": nf,
        "app.kubernetes.io/instance": f"{settings.stack}-{nf}",
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/part-of": PART_OF,
        "app.kubernetes.io/managed-by": "pulumi",
    }


def selector(settings: Settings, nf: str) -> dict[str, str]:
    """The subset of labels that selects an NF's pods (stable across upgrades)."""
    return {
        "app.kubernetes.io/name": nf,
        "app.kubernetes.io/instance": f"{settings.stack}-{nf}",
    }

"""Stack settings profiles shared by the render and live test tiers.

The loopback profile puts every network function on its own 127.0.0.x address, so real
daemons can run the product's rendered configs side by side on one host (or in one network
namespace). It is plain stack config: the same `from_mapping` the Pulumi program uses.
"""

from __future__ import annotations

from typing import Any

from components.settings import Settings, from_mapping

LOOPBACK_ADDRESSES = {
    "pcscfAddress": "127.0.0.11",
    "icscfAddress": "127.0.0.12",
    "scscfAddress": "127.0.0.13",
    "hssAddress": "127.0.0.20",
    "pcrfAddress": "127.0.0.21",
    "pgwAddress": "127.0.0.22",
    "valkeyAddress": "127.0.0.30",
    "rtpengineAddress": "127.0.0.40",
    "corednsAddress": "127.0.0.53",
    "cgratesAddress": "127.0.0.50",
}
TEST_VALKEY_PASSWORD = "loopback-valkey-password"
TEST_MONGODB_PASSWORD = "loopback-mongodb-password"


def loopback_settings(stack: str = "loopback", **overrides: Any) -> Settings:
    """Settings with every NF on 127.0.0.x; `overrides` are stack config keys (camelCase).

    e.g. ``loopback_settings(pcscfIpsec=False, mnc="001", imsDomain="ims.example.net")``.
    """
    values: dict[str, Any] = {**LOOPBACK_ADDRESSES, "valkeyPassword": TEST_VALKEY_PASSWORD, "mongodbPassword": TEST_MONGODB_PASSWORD}
    values.update(overrides)
    return from_mapping(values, stack=stack)


def stack_settings(stack: str = "test", **values: Any) -> Settings:
    """Settings as a Kubernetes stack would have them (no fixed addresses unless given)."""
    values.setdefault("valkeyPassword", TEST_VALKEY_PASSWORD)
    values.setdefault("mongodbPassword", TEST_MONGODB_PASSWORD)
    return from_mapping(values, stack=stack)

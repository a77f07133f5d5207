"""Who talks to whom: one declarative table of the interfaces between the network functions.

Each row is one relation: the NF that opens the connection, the NF that answers, the protocol
and the answering port. The rest of the program asks this table instead of restating the
relation: who receives the Valkey password and waits for Valkey, whom Valkey's NetworkPolicy
admits, and (as it grows) the Diameter peers and the DNS records. Pure data: no Pulumi here.
"""

from __future__ import annotations

from dataclasses import dataclass

VALKEY_PORT = 6379


@dataclass(frozen=True)
class Interface:
    name: str  # 3GPP reference point (Cx, Rx, ...) or what the link is for ("database")
    client: str  # the NF that opens the connection
    server: str  # the NF that answers
    protocol: str
    port: int


INTERFACES: tuple[Interface, ...] = (
    # IMS database (Valkey, RESP over TCP). ims_usrloc_pcscf keeps P-CSCF contacts there and
    # ims_icscf reads the S-CSCF list; the S-CSCF keeps its contacts in memory (ims_usrloc_scscf
    # on db_redis crashes at start-up), so it is no client. CGRateS keeps its DataDB there.
    Interface("database", "pcscf", "valkey", "RESP", VALKEY_PORT),
    Interface("database", "icscf", "valkey", "RESP", VALKEY_PORT),
    Interface("database", "cgrates", "valkey", "RESP", VALKEY_PORT),
)


def clients_of(server: str, name: str | None = None) -> tuple[str, ...]:
    """The NFs that open connections to `server` (on interface `name`, if given), in table order."""
    seen: dict[str, None] = {}
    for interface in INTERFACES:
        if interface.server == server and (name is None or interface.name == name):
            seen.setdefault(interface.client)
    return tuple(seen)


def uses(client: str, server: str) -> bool:
    """Whether `client` opens any connection to `server`."""
    return client in clients_of(server)


def valkey_clients() -> tuple[str, ...]:
    """Every NF that reads or writes the IMS database, deployed by this stack or not."""
    return clients_of("valkey", "database")

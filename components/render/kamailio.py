"""Kamailio P-CSCF, I-CSCF and S-CSCF configuration, rendered from settings.

The shipped cfg under config/kamailio/ stays static; only a small defines file per role is
rendered. (Initial interface; the configs land with the Kamailio issue.)
"""

from __future__ import annotations

from ..settings import CSCF_ROLES, Settings

SIP_PORT = 5060
DIAMETER_PORT = 3868
# ims_ipsec_pcscf: protected client and server ports towards the UE.
IPSEC_CLIENT_PORT = 5100
IPSEC_SERVER_PORT = 6100


def render(settings: Settings, role: str) -> dict[str, str]:
    """Files of one role's config directory, keyed by path relative to /etc/kamailio."""
    if role not in CSCF_ROLES:
        raise ValueError(f"role {role!r}: must be one of {', '.join(CSCF_ROLES)}")
    nf = settings.nf(role)
    return {"defines.cfg": f'#!define ROLE "{role}"\n#!define FQDN "{nf.fqdn}"\n'}


def render_secrets(settings: Settings, role: str, valkey_password: str) -> dict[str, str]:
    """Files with secrets (Valkey URL with password), mounted from a Kubernetes Secret."""
    db = settings.valkey_databases[role]
    valkey = settings.nf("valkey")
    return {"secrets.cfg": f'#!define VALKEY_URL "redis://:{valkey_password}@{valkey.fqdn}:6379/{db}"\n'}

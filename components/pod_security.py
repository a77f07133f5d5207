"""The Pod Security Admission level the stack's namespace needs, and why.

Clusters that enforce Pod Security Standards (a `baseline` or `restricted` default in the
AdmissionConfiguration, or namespace labels set by a platform team) refuse pods that use the
host's network or ports or add capabilities beyond the baseline list. Some of ours must:
rtpengine's media ports are on the node (hostNetwork, or hostPort entries), the P-CSCF with
`pcscfGmExposure: hostNetwork` takes Gm on the node, and with IPsec it installs xfrm states
(NET_ADMIN). The namespace therefore says `enforce: privileged`, and
why, in an annotation; `audit: baseline` keeps every such pod visible in the audit log. Every
other pod of the stack runs non-root with every capability dropped and no privilege escalation.
"""

from __future__ import annotations

from .settings import Settings

LABEL = "pod-security.kubernetes.io"
REASON_ANNOTATION = "ims-core.io/pod-security-reason"


def needs(settings: Settings) -> list[str]:
    """What in this stack is beyond the `baseline` level, one line per pod."""
    reasons = []
    exposure = settings.media.exposure
    if exposure == "hostNetwork":
        reasons.append("rtpengine: hostNetwork (media ports on the node)")
    elif exposure == "hostPort":
        reasons.append("rtpengine: hostPort (each media port mapped from the node)")
    if settings.pcscf_gm_exposure == "hostNetwork":
        reasons.append("pcscf: hostNetwork (Gm on the node, pcscfGmExposure)")
    if settings.pcscf_ipsec:
        reasons.append("pcscf: capability NET_ADMIN (IPsec xfrm states, pcscfIpsec)")
    return reasons


def level(settings: Settings) -> str:
    return "privileged" if needs(settings) else "baseline"


def namespace_labels(settings: Settings) -> dict[str, str]:
    enforce = level(settings)
    return {
        f"{LABEL}/enforce": enforce,
        f"{LABEL}/enforce-version": "latest",
        f"{LABEL}/audit": "baseline",
        f"{LABEL}/audit-version": "latest",
    }


def namespace_annotations(settings: Settings) -> dict[str, str]:
    reasons = needs(settings)
    text = "; ".join(reasons) if reasons else "no pod needs more than baseline"
    return {REASON_ANNOTATION: text}

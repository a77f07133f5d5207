"""The ims-core guardrails as pure functions over Pulumi resource properties.

Each rule takes what the policy engine hands a policy (the Kubernetes type token and the
resource's properties, camelCase as in the Kubernetes API) and returns the violations as
messages. No Pulumi import: the policy pack (__main__.py) wraps these for `pulumi preview
--policy-pack`, and tests call them on the resources of a real preview and on bad inputs.

Properties arrive as Mapping/Sequence proxies under the policy engine; reading a value that is
unknown during preview raises there, and the engine reports that policy as not run for that
resource (advisory) instead of guessing.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

K8S = "kubernetes:"
NAMESPACE = "kubernetes:core/v1:Namespace"
CONFIG_MAP = "kubernetes:core/v1:ConfigMap"
NETWORK_POLICY = "kubernetes:networking.k8s.io/v1:NetworkPolicy"
# Workload type -> path from the resource's properties to its pod template.
POD_TEMPLATES = {
    "kubernetes:apps/v1:Deployment": ("spec", "template"),
    "kubernetes:apps/v1:StatefulSet": ("spec", "template"),
    "kubernetes:apps/v1:DaemonSet": ("spec", "template"),
    "kubernetes:apps/v1:ReplicaSet": ("spec", "template"),
    "kubernetes:batch/v1:Job": ("spec", "template"),
    "kubernetes:batch/v1:CronJob": ("spec", "jobTemplate", "spec", "template"),
    "kubernetes:core/v1:Pod": (),
}

# Capabilities a container may add, per network function (app.kubernetes.io/name) and with the
# reason it needs it. Anything else added is a violation; so is any privileged container.
CAPABILITY_ALLOW_LIST: dict[tuple[str, str], str] = {
    ("pcscf", "NET_ADMIN"): (
        "ims_ipsec_pcscf installs the xfrm states and policies that protect Gm towards the UE "
        "(pcscfIpsec); no other capability and no privileged mode"
    ),
    ("pgw", "NET_ADMIN"): (
        "the UPF's upf-tun container creates the ogstun TUN device, its addresses and the NAT rules "
        "of the UE pools (GTP-U user plane); no other capability and no privileged mode"
    ),
}

# CPU limits are not required: a throttled Kamailio or rtpengine misses SIP retransmission and
# RTP timing, which users notice as dropped calls; memory is capped for every container.
REQUIRED_REQUESTS = ("cpu", "memory")
REQUIRED_LIMITS = ("memory",)

FLOATING_TAGS = {"latest", "stable", "edge", "main", "master", "nightly", "dev", "mainline", "rolling"}

PSA_LABEL = "pod-security.kubernetes.io/enforce"
PSA_LEVELS = ("restricted", "baseline", "privileged")  # strictest first


@dataclass(frozen=True)
class Workload:
    """A resource that owns a pod template."""

    type: str
    name: str  # metadata.name, or the logical name when the object is autonamed
    namespace: str | None
    pod_labels: Mapping[str, str]
    pod_spec: Mapping


def _get(value, *path, default=None):
    for key in path:
        if not isinstance(value, Mapping) or key not in value:
            return default
        value = value[key]
    return value


def _items(value) -> Sequence:
    return value if isinstance(value, Sequence) and not isinstance(value, str) else ()


def workload(resource_type: str, props: Mapping, logical_name: str = "") -> Workload | None:
    """The pod template of a workload resource, or None for any other resource."""
    if resource_type not in POD_TEMPLATES:
        return None
    template = _get(props, *POD_TEMPLATES[resource_type]) if POD_TEMPLATES[resource_type] else props
    return Workload(
        type=resource_type.split(":")[-1],
        name=_get(props, "metadata", "name") or logical_name,
        namespace=_get(props, "metadata", "namespace"),
        pod_labels=_get(template, "metadata", "labels", default={}) or {},
        pod_spec=_get(template, "spec", default={}) or {},
    )


def containers(pod_spec: Mapping) -> Iterator[tuple[str, Mapping]]:
    """(kind, container) for every init, regular and ephemeral container of a pod."""
    for kind in ("initContainers", "containers", "ephemeralContainers"):
        for container in _items(_get(pod_spec, kind)):
            yield kind, container


def _where(w: Workload, container: Mapping) -> str:
    return f"{w.type} {w.name}, container {_get(container, 'name', default='?')}"


# --- rule 1: requests and limits ------------------------------------------------------------


def check_resources(resource_type: str, props: Mapping, logical_name: str = "") -> list[str]:
    w = workload(resource_type, props, logical_name)
    if w is None:
        return []
    problems = []
    for kind, container in containers(w.pod_spec):
        if kind == "ephemeralContainers":
            continue  # the API refuses resources on ephemeral containers
        resources = _get(container, "resources", default={}) or {}
        missing = [f"requests.{r}" for r in REQUIRED_REQUESTS if not _get(resources, "requests", r)]
        missing += [f"limits.{r}" for r in REQUIRED_LIMITS if not _get(resources, "limits", r)]
        if missing:
            problems.append(f"{_where(w, container)}: no {', '.join(missing)}")
    return problems


# --- rule 2: privileges -----------------------------------------------------------------------


def check_privileges(resource_type: str, props: Mapping, logical_name: str = "") -> list[str]:
    w = workload(resource_type, props, logical_name)
    if w is None:
        return []
    nf = w.pod_labels.get("app.kubernetes.io/name", "")
    problems = []
    for _, container in containers(w.pod_spec):
        security = _get(container, "securityContext", default={}) or {}
        if _get(security, "privileged"):
            problems.append(f"{_where(w, container)}: privileged container (never allowed)")
        for capability in _items(_get(security, "capabilities", "add")):
            name = str(capability).upper().removeprefix("CAP_")
            if (nf, name) not in CAPABILITY_ALLOW_LIST:
                allowed = ", ".join(f"{c} for {n}" for n, c in CAPABILITY_ALLOW_LIST) or "none"
                problems.append(
                    f"{_where(w, container)}: adds capability {name} for app.kubernetes.io/name={nf or '(unset)'}, "
                    f"which the allow-list does not grant (allowed: {allowed})"
                )
    return problems


# --- rule 3: pinned images --------------------------------------------------------------------

_DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")


def image_problem(image: str) -> str | None:
    """Why an image reference is not pinned, or None when it is (digest or versioned tag)."""
    if _DIGEST.search(image):
        return None
    last = image.rsplit("/", 1)[-1]
    if "@" in last:
        return "has a digest that is not sha256:<64 hex>"
    if ":" not in last:
        return "has no tag (the runtime pulls latest)"
    tag = last.split(":", 1)[1]
    if tag.lower() in FLOATING_TAGS or not re.search(r"\d", tag):
        return f"uses the floating tag '{tag}' (pin a version tag or a digest)"
    return None


def check_images(resource_type: str, props: Mapping, logical_name: str = "") -> list[str]:
    w = workload(resource_type, props, logical_name)
    if w is None:
        return []
    problems = []
    for _, container in containers(w.pod_spec):
        image = _get(container, "image")
        reason = image_problem(str(image)) if image else "has no image"
        if reason:
            problems.append(f"{_where(w, container)}: image '{image}' {reason}")
    return problems


# --- rule 4: no keys or passwords in ConfigMaps ---------------------------------------------

_SECRET_KEY_NAME = re.compile(
    r"(pass(word|wd)?|secret|token|credential|private[-_.]?key|api[-_]?key|\.pem$|\.key$|^(k|ki|opc?)$)",
    re.IGNORECASE,
)
_SECRET_VALUES = (
    (re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"), "a PEM private key"),
    (re.compile(r"\b[a-z][a-z0-9+.-]*://[^/\s:@\"']*:[^@\s/\"'$]+@", re.IGNORECASE), "a URL with a password"),
    (re.compile(r"^\s*(requirepass|masterauth)\s+[^\s$]", re.IGNORECASE | re.MULTILINE), "a Valkey/Redis password"),
    (
        re.compile(
            r"\b(password|passwd|pwd|secret|api[-_]?key|token)\b[\"']?\s*[=:]\s*[\"']?(?![\"'$<{])[^\s\"',;]{4,}",
            re.IGNORECASE,
        ),
        "a password or token assignment",
    ),
    (
        re.compile(r"\b(k|ki|op|opc)\b[\"']?\s*[=:]\s*[\"']?[0-9a-f]{32}\b", re.IGNORECASE),
        "a subscriber key (K/OP/OPc, 128-bit hex)",
    ),
)


def check_config_map(resource_type: str, props: Mapping, logical_name: str = "") -> list[str]:
    if resource_type != CONFIG_MAP:
        return []
    name = _get(props, "metadata", "name") or logical_name
    problems = []
    data = _get(props, "data", default={}) or {}
    for key in list(data) + list(_get(props, "binaryData", default={}) or {}):
        if _SECRET_KEY_NAME.search(key):
            problems.append(f"ConfigMap {name}: key '{key}' names a secret (put it in a Secret)")
    for key, value in data.items():
        for pattern, what in _SECRET_VALUES:
            if isinstance(value, str) and pattern.search(value):
                problems.append(f"ConfigMap {name}: '{key}' contains {what} (put it in a Secret)")
    return problems


# --- rule 5: every workload covered by a NetworkPolicy --------------------------------------


def _selector_matches(selector: Mapping, labels: Mapping[str, str]) -> bool:
    for key, value in (_get(selector, "matchLabels", default={}) or {}).items():
        if labels.get(key) != value:
            return False
    for expression in _items(_get(selector, "matchExpressions")):
        key, operator = expression["key"], expression["operator"]
        values = set(_items(_get(expression, "values")))
        present = key in labels
        if operator == "In" and not (present and labels[key] in values):
            return False
        if operator == "NotIn" and present and labels[key] in values:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
    return True


def _governs_ingress(policy_props: Mapping) -> bool:
    types = list(_items(_get(policy_props, "spec", "policyTypes")))
    return "Ingress" in types if types else True  # absent policyTypes always includes Ingress


def check_network_policies(resources: Sequence[tuple[str, str, Mapping]]) -> list[str]:
    """resources: (type, logical name, props) of the whole stack."""
    policies = [props for rtype, _, props in resources if rtype == NETWORK_POLICY and _governs_ingress(props)]
    problems = []
    for rtype, logical, props in resources:
        w = workload(rtype, props, logical)
        if w is None:
            continue
        covering = [
            p
            for p in policies
            if (w.namespace is None or _get(p, "metadata", "namespace") in (None, w.namespace))
            and _selector_matches(_get(p, "spec", "podSelector", default={}) or {}, w.pod_labels)
        ]
        if not covering:
            problems.append(f"{w.type} {w.name}: no NetworkPolicy selects its pods (labels {dict(w.pod_labels)})")
    return problems


# --- rule 6: the namespace's Pod Security Admission level -----------------------------------

# What the PSA baseline level allows a container to add (Kubernetes Pod Security Standards).
_BASELINE_CAPABILITIES = {
    "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD", "NET_BIND_SERVICE",
    "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT",
}  # fmt: skip
_RESTRICTED_VOLUMES = {
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret",
}  # fmt: skip


def _needs_privileged(spec: Mapping) -> list[str]:
    reasons = [f"{flag}" for flag in ("hostNetwork", "hostPID", "hostIPC") if _get(spec, flag)]
    if any("hostPath" in volume for volume in _items(_get(spec, "volumes"))):
        reasons.append("a hostPath volume")
    for _, c in containers(spec):
        name = _get(c, "name", default="?")
        security = _get(c, "securityContext", default={}) or {}
        if _get(security, "privileged"):
            reasons.append(f"{name} is privileged")
        extra = {str(x).upper() for x in _items(_get(security, "capabilities", "add"))} - _BASELINE_CAPABILITIES
        if extra:
            reasons.append(f"{name} adds {', '.join(sorted(extra))}")
        if any(_get(p, "hostPort") for p in _items(_get(c, "ports"))):
            reasons.append(f"{name} binds host ports")
    return reasons


def _needs_baseline(spec: Mapping) -> list[str]:
    """Why the pod fails the PSA restricted level (but not baseline)."""
    pod = _get(spec, "securityContext", default={}) or {}
    reasons = []
    if any(not (set(v) & _RESTRICTED_VOLUMES) for v in _items(_get(spec, "volumes")) if "hostPath" not in v):
        reasons.append("a volume type outside the restricted list")
    for _, c in containers(spec):
        name = _get(c, "name", default="?")
        sec = _get(c, "securityContext", default={}) or {}
        non_root = _get(sec, "runAsNonRoot", default=_get(pod, "runAsNonRoot"))
        user = _get(sec, "runAsUser", default=_get(pod, "runAsUser"))
        seccomp = _get(sec, "seccompProfile", "type", default=_get(pod, "seccompProfile", "type"))
        added = {str(x).upper() for x in _items(_get(sec, "capabilities", "add"))} - {"NET_BIND_SERVICE"}
        dropped = {str(x).upper() for x in _items(_get(sec, "capabilities", "drop"))}
        if non_root is not True or user == 0:
            reasons.append(f"{name} may run as root")
        if _get(sec, "allowPrivilegeEscalation") is not False:
            reasons.append(f"{name} allows privilege escalation")
        if "ALL" not in dropped or added:
            reasons.append(f"{name} keeps or adds capabilities")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            reasons.append(f"{name} has no RuntimeDefault seccomp profile")
    return reasons


def needed_level(spec: Mapping) -> tuple[str, list[str]]:
    """The strictest PSA level that admits this pod spec, and why it is not stricter."""
    if reasons := _needs_privileged(spec):
        return "privileged", reasons
    if reasons := _needs_baseline(spec):
        return "baseline", reasons
    return "restricted", []


def check_pod_security(resources: Sequence[tuple[str, str, Mapping]]) -> list[str]:
    """Each namespace of the stack enforces exactly the PSA level its pods need.

    Stricter and the API server refuses the pods; looser and the namespace admits privileges no
    pod of the stack needs.
    """
    workloads = [w for rtype, logical, props in resources if (w := workload(rtype, props, logical))]
    problems = []
    for rtype, logical, props in resources:
        if rtype != NAMESPACE:
            continue
        name = _get(props, "metadata", "name") or logical
        mine = [w for w in workloads if w.namespace in (None, name)]
        needs = {w.name: needed_level(w.pod_spec) for w in mine}
        need = max((level for level, _ in needs.values()), key=PSA_LEVELS.index, default="restricted")
        why = "; ".join(f"{n}: {', '.join(r)}" for n, (level, r) in needs.items() if level == need and r)
        level = (_get(props, "metadata", "labels", default={}) or {}).get(PSA_LABEL)
        if level is None:
            problems.append(f"Namespace {name}: no {PSA_LABEL} label; its pods need '{need}' ({why or 'nothing more'})")
        elif level not in PSA_LEVELS:
            problems.append(f"Namespace {name}: {PSA_LABEL}={level} is not one of {', '.join(PSA_LEVELS)}")
        elif level != need:
            stricter = PSA_LEVELS.index(level) < PSA_LEVELS.index(need)
            verdict = "refuses its pods what they need" if stricter else "is looser than what its pods need"
            problems.append(f"Namespace {name}: {PSA_LABEL}={level} {verdict}: '{need}' ({why or 'nothing more'})")
    return problems


RESOURCE_RULES = {
    "ims-container-resources": check_resources,
    "ims-no-privilege-outside-allow-list": check_privileges,
    "ims-pinned-images": check_images,
    "ims-no-secrets-in-configmaps": check_config_map,
}
STACK_RULES = {
    "ims-networkpolicy-coverage": check_network_policies,
    "ims-pod-security-level": check_pod_security,
}

"""ims-core policy pack: `pulumi preview --policy-pack policy` runs this folder.

Every rule is mandatory: a violation fails the preview or update. The rules themselves live in
rules.py as pure functions, so tests can run them on a real preview's resources as well.
"""

import rules
from pulumi_policy import (
    EnforcementLevel,
    PolicyPack,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

DESCRIPTIONS = {
    "ims-container-resources": "Every container requests CPU and memory and has a memory limit.",
    "ims-no-privilege-outside-allow-list": "No privileged container; added capabilities only from the allow-list, each with its reason.",
    "ims-pinned-images": "Images by digest or a versioned tag, never latest or another floating tag.",
    "ims-no-secrets-in-configmaps": "No key, password or token in a ConfigMap.",
    "ims-networkpolicy-coverage": "Every workload's pods are selected by an ingress NetworkPolicy.",
    "ims-pod-security-level": "Each namespace enforces exactly the Pod Security Admission level its pods need.",
}


def _resource_policy(name, check):
    def validate(args: ResourceValidationArgs, report_violation: ReportViolation):
        if args.resource_type.startswith(rules.K8S):
            for message in check(args.resource_type, args.props, args.name):
                report_violation(message)

    return ResourceValidationPolicy(
        name=name,
        description=DESCRIPTIONS[name],
        validate=validate,
        enforcement_level=EnforcementLevel.MANDATORY,
    )


def _stack_policy(name, check):
    def validate(args: StackValidationArgs, report_violation: ReportViolation):
        resources = [
            (r.resource_type, r.name, r.props) for r in args.resources if r.resource_type.startswith(rules.K8S)
        ]
        for message in check(resources):
            report_violation(message)

    return StackValidationPolicy(
        name=name,
        description=DESCRIPTIONS[name],
        validate=validate,
        enforcement_level=EnforcementLevel.MANDATORY,
    )


PolicyPack(
    name="ims-core",
    enforcement_level=EnforcementLevel.MANDATORY,
    policies=[_resource_policy(n, c) for n, c in rules.RESOURCE_RULES.items()]
    + [_stack_policy(n, c) for n, c in rules.STACK_RULES.items()],
)

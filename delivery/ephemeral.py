"""Ephemeral stacks pr-<N>: create and update, destroy and remove, reap.

One implementation for people and for the workflow (.github/workflows/ephemeral.yml), on the
Pulumi Automation API over the project in this repository:

    python -m delivery.ephemeral up   --pr 42 [--kubeconfig F] [--kube-context C] [--set key=value ...]
    python -m delivery.ephemeral down --pr 42
    python -m delivery.ephemeral reap --open 40,42 --ttl-hours 72
    python -m delivery.ephemeral list

Stacks of different pull requests share one cluster without colliding:
- namespace `ims-pr-<N>` (every namespaced object, and the only cluster-scoped object, the
  Namespace itself, is named after it);
- a media port range of its own (a slot of SLOT_WIDTH ports above the long-lived stacks'
  default 40000-40999), taken from what the other pr-* stacks' state says they hold, so two
  rtpengine pods on one node never ask for the same host port;
- rtpengine with hostPort exposure, so NG stays in the pod network instead of every stack
  binding UDP 2223 on the node, and the P-CSCF behind its Service (pcscfGmExposure service), not
  on the node's SIP ports; so no IPsec on Gm in an ephemeral stack (ESP needs hostNetwork).

Nothing the tool needs lives only in the working tree: the port range is read back from the
stack's own state and the stack generates its Valkey password and keeps it in that state, so a
fresh checkout (a new workflow run) updates or destroys the same stack with the same config.
The state backend and passphrase come from PULUMI_BACKEND_URL and PULUMI_CONFIG_PASSPHRASE.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml
from pulumi import automation as auto

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = Path(__file__).resolve().parent / "ephemeral-stack.yaml"
# The pack through its launcher (policy/ims-core-policy says why not the folder).
POLICY_PACK = ROOT / "policy" / "ims-core-policy"

STACK_PATTERN = re.compile(r"^pr-([1-9][0-9]{0,8})$")
SLOT_BASE = 41000  # above the long-lived stacks' default 40000-40999
SLOT_WIDTH = 20  # 5 calls: an ephemeral stack is for a few test calls
SLOT_COUNT = 400  # 41000-48999
# Keys the tool sets per stack (a template or --set value would make two stacks collide), and
# valkeyPassword, which each stack generates for itself.
RESERVED = {
    "namespace", "rtpenginePortMin", "rtpenginePortMax", "valkeyPassword", "rtpengineMediaExposure", "pcscfGmExposure",
}  # fmt: skip
# Fixed Service addresses are cluster-wide: two stacks with one template would ask for the same.
FIXED_ADDRESSES = {
    "pcscfAddress",
    "icscfAddress",
    "scscfAddress",
    "valkeyAddress",
    "corednsAddress",
    "rtpengineAddress",
}


class EphemeralError(Exception):
    pass


def stack_name(pr: int) -> str:
    if pr < 1:
        raise EphemeralError(f"--pr {pr}: must be a pull request number (1 or more)")
    return f"pr-{pr}"


def namespace(pr: int) -> str:
    return f"ims-pr-{pr}"


def slot_ports(slot: int) -> tuple[int, int]:
    low = SLOT_BASE + slot * SLOT_WIDTH
    return low, low + SLOT_WIDTH - 1


@dataclass(frozen=True)
class Backend:
    """The project and the environment every Pulumi command of the tool runs with."""

    project: Path

    def options(self) -> auto.LocalWorkspaceOptions:
        # A fresh checkout has no Pulumi.pr-<N>.yaml: use the secrets manager in the state.
        env = {"PULUMI_FALLBACK_TO_STATE_SECRETS_MANAGER": "true", "PULUMI_SKIP_UPDATE_CHECK": "true"}
        return auto.LocalWorkspaceOptions(work_dir=str(self.project), env_vars=env)

    def workspace(self) -> auto.LocalWorkspace:
        return auto.LocalWorkspace(work_dir=str(self.project), env_vars=self.options().env_vars)

    def stack(self, name: str, create: bool = True) -> auto.Stack:
        if create:
            return auto.create_or_select_stack(name, work_dir=str(self.project), opts=self.options())
        return auto.select_stack(name, work_dir=str(self.project), opts=self.options())

    def ephemeral_stacks(self) -> dict[str, auto.StackSummary]:
        return {s.name: s for s in self.workspace().list_stacks() if STACK_PATTERN.match(s.name)}


def host_ports(stack: auto.Stack) -> set[int]:
    """The host ports the stack's workloads hold, from its state (what is deployed)."""
    ports: set[int] = set()
    for resource in stack.export_stack().deployment.get("resources") or []:
        spec = ((resource.get("inputs") or {}).get("spec") or {}).get("template", {}).get("spec") or {}
        for container in spec.get("containers") or []:
            ports.update(p["hostPort"] for p in container.get("ports") or [] if p.get("hostPort"))
    return ports


def choose_slot(backend: Backend, name: str, pr: int) -> int:
    """This stack's slot if its state shows one, else the first slot no other pr-* stack holds."""
    taken: dict[int, str] = {}
    own: set[int] = set()
    for other in backend.ephemeral_stacks():
        ports = host_ports(backend.stack(other, create=False))
        if other == name:
            own = ports
            continue
        for port in ports:
            if SLOT_BASE <= port < SLOT_BASE + SLOT_COUNT * SLOT_WIDTH:
                taken[(port - SLOT_BASE) // SLOT_WIDTH] = other
    for slot in sorted({(p - SLOT_BASE) // SLOT_WIDTH for p in own if p >= SLOT_BASE}):
        if slot not in taken:
            return slot
    # Start at the PR's own slot so a stack usually keeps the same range across re-creations.
    for offset in range(SLOT_COUNT):
        slot = (pr + offset) % SLOT_COUNT
        if slot not in taken:
            return slot
    raise EphemeralError(f"all {SLOT_COUNT} media port slots are held by pr-* stacks; reap closed ones first")


def parse_overrides(pairs: list[str]) -> dict[str, str]:
    overrides, errors = {}, []
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            errors.append(f"--set {pair!r}: must be key=value")
        overrides[key] = value
    return _check_keys(overrides, "--set", errors)


def _check_keys(config: dict, where: str, errors: list[str] | None = None) -> dict:
    errors = errors or []
    for key, value in config.items():
        if key in RESERVED:
            errors.append(f"{where} {key}: set per stack by the tool or the stack itself (it keeps stacks apart); remove it")
        elif key in FIXED_ADDRESSES and value:
            errors.append(f"{where} {key} = {value!r}: a fixed Service address would collide between stacks")
    if errors:
        raise EphemeralError("; ".join(errors))
    return config


def template_config() -> dict[str, str]:
    raw = yaml.safe_load(TEMPLATE.read_text())["config"] or {}
    config = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in raw.items()}
    return _check_keys(config, str(TEMPLATE.relative_to(ROOT)), [])


def stack_config(pr: int, slot: int, args: argparse.Namespace) -> dict[str, auto.ConfigValue]:
    stack_name(pr)  # refuses a bad number before anything is written
    low, high = slot_ports(slot)
    values = {**template_config(), **parse_overrides(args.set)}
    values.update(
        namespace=namespace(pr),
        # hostNetwork would put every stack's NG control port (UDP 2223) on the same node port;
        # hostPort keeps NG in the pod network and maps only the stack's own media ports.
        rtpengineMediaExposure="hostPort",
        # A host-network P-CSCF would hold the node's SIP ports (5060, 6060, ...) for one stack.
        pcscfGmExposure="service",
        rtpenginePortMin=str(low),
        rtpenginePortMax=str(high),
    )
    if args.kubeconfig:
        values["kubeconfig"] = args.kubeconfig
    if args.kube_context:
        values["kubeContext"] = args.kube_context
    return {key: auto.ConfigValue(value) for key, value in values.items()}


def up(backend: Backend, args: argparse.Namespace) -> None:
    name = stack_name(args.pr)
    slot = choose_slot(backend, name, args.pr)
    stack = backend.stack(name)
    # The whole config each time: what a fresh checkout would write, so runs agree.
    stale = list(stack.get_all_config())
    if stale:
        stack.remove_all_config(stale)
    stack.set_all_config(stack_config(args.pr, slot, args))
    low, high = slot_ports(slot)
    print(f"{name}: namespace {namespace(args.pr)}, media ports {low}-{high}", flush=True)
    stack.up(on_output=print, policy_packs=[str(POLICY_PACK)], color="never")


def down(backend: Backend, name: str) -> None:
    if name not in backend.ephemeral_stacks():
        print(f"{name}: no such stack, nothing to destroy", flush=True)
        return
    stack = backend.stack(name, create=False)
    stack.destroy(on_output=print, color="never")
    stack.workspace.remove_stack(name)
    (backend.project / f"Pulumi.{name}.yaml").unlink(missing_ok=True)
    print(f"{name}: destroyed and removed", flush=True)


def created_at(backend: Backend, name: str) -> datetime | None:
    """When the stack's first update started (its history's oldest entry)."""
    history = backend.stack(name, create=False).history(show_secrets=False)
    if not history:
        return None
    return min(h.start_time for h in history).replace(tzinfo=UTC)


def to_reap(backend: Backend, open_prs: set[int], ttl: timedelta, now: datetime) -> dict[str, str]:
    """pr-* stacks to remove, with the reason: the pull request is closed or the TTL passed."""
    verdicts = {}
    for name in sorted(backend.ephemeral_stacks()):
        pr = int(STACK_PATTERN.match(name).group(1))
        born = created_at(backend, name)
        if pr not in open_prs:
            verdicts[name] = f"pull request #{pr} is not open"
        elif born is not None and now - born > ttl:
            verdicts[name] = f"older than {ttl} (first update {born.isoformat(timespec='seconds')})"
    return verdicts


def reap(backend: Backend, args: argparse.Namespace) -> None:
    open_prs = {int(n) for n in re.split(r"[,\s]+", args.open.strip()) if n}
    now = datetime.fromisoformat(args.now) if args.now else datetime.now(UTC)
    verdicts = to_reap(backend, open_prs, timedelta(hours=args.ttl_hours), now)
    if not verdicts:
        print("reaper: nothing to remove", flush=True)
    for name, reason in verdicts.items():
        print(f"reaper: {name}: {reason}", flush=True)
        if not args.dry_run:
            down(backend, name)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m delivery.ephemeral", description=__doc__.split("\n\n")[0])
    p.add_argument("--project", type=Path, default=ROOT, help="the Pulumi project directory (default: this repository)")
    sub = p.add_subparsers(dest="command", required=True)
    up_p = sub.add_parser("up", help="create or update pr-<N> and deploy it")
    up_p.add_argument("--pr", type=int, required=True)
    up_p.add_argument("--kubeconfig", default="")
    up_p.add_argument("--kube-context", default="")
    up_p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a template key")
    down_p = sub.add_parser("down", help="destroy pr-<N> and remove the stack")
    down_p.add_argument("--pr", type=int, required=True)
    reap_p = sub.add_parser("reap", help="remove pr-* stacks whose pull request is closed or that outlived the TTL")
    reap_p.add_argument("--open", required=True, help="numbers of the open pull requests, comma-separated")
    reap_p.add_argument("--ttl-hours", type=float, default=72.0)
    reap_p.add_argument("--now", default="", help="ISO time to judge ages against (default: now)")
    reap_p.add_argument("--dry-run", action="store_true")
    sub.add_parser("list", help="the pr-* stacks and their media ports")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    backend = Backend(project=args.project.resolve())
    try:
        if args.command == "up":
            up(backend, args)
        elif args.command == "down":
            down(backend, stack_name(args.pr))
        elif args.command == "reap":
            reap(backend, args)
        else:
            for name in sorted(backend.ephemeral_stacks()):
                ports = sorted(host_ports(backend.stack(name, create=False)))
                print(f"{name}\t{f'{ports[0]}-{ports[-1]}' if ports else '-'}")
    except (EphemeralError, auto.errors.CommandError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

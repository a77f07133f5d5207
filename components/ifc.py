"""Initial Filter Criteria of a declared subscriber (`subscribers[N].ifcs`): parsed and validated.

An iFC (TS 29.228 annex B, CxDataType.xsd) sends matching SIP requests of the subscriber to an
application server over ISC. open5gs 2.7 keeps them per subscriber in an `ifc` array of its
document (lib/dbi/ims.c, ogs_dbi_ims_data) and, since open5gs pull request 3829 (in 2.7.6),
its HSS puts them into the User-Data of the SAA, from which the S-CSCF's ims_isc evaluates
them. How that array is written is config/open5gs/provision.py's business; here is what a
user may declare:

    ifcs:
      - priority: 0
        applicationServer: sip:mmtel.ims.example.net        # ServerName
        defaultHandling: continue                          # or terminate (SESSION_TERMINATED)
        conditionTypeCnf: false                            # true: AND of ORs; false: OR of ANDs
        triggers:                                          # the SPTs, each with exactly one of
          - {method: INVITE}                               #   method, sessionCase, header,
          - {sessionCase: originating}                     #   sdpLine, requestUri
          - {header: {name: Accept-Contact, content: ".*mmtel.*"}, group: 1, negated: false}

At most one iFC per subscriber: open5gs 2.7's reader (ogs_dbi_ims_data) stores the SPT count it
read for every iFC on the first one (`ims_data->ifc->trigger_point.num_of_spt`), so a second
iFC would reach the S-CSCF with no trigger at all (matching every request) and the first with
the wrong count.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .config_objects import known_object

MAX_IFCS = 1
# open5gs' OGS_MAX_NUM_OF_SPT.
MAX_TRIGGERS = 16
# TS 29.228 annex B: DefaultHandling and SessionCase values.
DEFAULT_HANDLING = {"continue": 0, "terminate": 1}
SESSION_CASES = {
    "originating": 0,
    "terminating-registered": 1,
    "terminating-unregistered": 2,
    "originating-unregistered": 3,
    "originating-cdiv": 4,
}
TRIGGER_KINDS = ("method", "sessionCase", "header", "sdpLine", "requestUri")
IFC_FIELDS = ("priority", "applicationServer", "defaultHandling", "conditionTypeCnf", "triggers")
_SIP_URI = re.compile(r"^sips?:[^\s<>\"]+$")
_TOKEN = re.compile(r"^[A-Za-z0-9!%*_+`'~.-]+$")  # a SIP method or header name (RFC 3261 token)


@dataclass(frozen=True)
class Trigger:
    """One Service Point Trigger. `kind` is one of TRIGGER_KINDS; `value` the method, session
    case number, request URI, or (header name / SDP line, content regexp)."""

    kind: str
    value: Any
    group: int = 0
    negated: bool = False


@dataclass(frozen=True)
class Ifc:
    priority: int
    application_server: str
    default_handling: int
    condition_type_cnf: bool
    triggers: tuple[Trigger, ...]


def _flag(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return None


def _number(value: Any) -> int | None:
    """A whole number open5gs can store as int32 (>= 0), or None."""
    if isinstance(value, str) and re.fullmatch(r"[0-9]{1,9}", value):
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**31:
        return value
    return None


def parse(key: str, raw: Any, errors: list[str]) -> tuple[Ifc, ...]:
    """`subscribers[N].ifcs` -> Ifcs; every problem appended to `errors` with its key."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        errors.append(f"{key} = {raw!r}: must be a list of iFC objects ({', '.join(IFC_FIELDS)})")
        return ()
    if len(raw) > MAX_IFCS:
        errors.append(
            f"{key}: {len(raw)} iFCs; open5gs 2.7 serves at most {MAX_IFCS} per subscriber correctly "
            "(its reader keeps only one SPT count, on the first iFC: lib/dbi/ims.c ogs_dbi_ims_data)"
        )
    parsed = [_one(f"{key}[{i}]", item, errors) for i, item in enumerate(raw)]
    return tuple(p for p in parsed if p is not None)


def _one(key: str, item: Any, errors: list[str]) -> Ifc | None:
    before = len(errors)
    if not known_object(key, item, IFC_FIELDS, errors, ", ".join(IFC_FIELDS)):
        return None
    priority = _number(item.get("priority", 0))
    if priority is None:
        errors.append(f"{key}.priority = {item.get('priority')!r}: must be a whole number >= 0 (0 is evaluated first)")
    server = item.get("applicationServer")
    if not isinstance(server, str) or not _SIP_URI.match(server):
        errors.append(f"{key}.applicationServer = {server!r}: required, a SIP URI of the application server, e.g. sip:as.example.net")
    handling = item.get("defaultHandling", "continue")
    if handling not in DEFAULT_HANDLING:
        errors.append(f"{key}.defaultHandling = {handling!r}: must be one of {', '.join(DEFAULT_HANDLING)}")
    cnf = _flag(item.get("conditionTypeCnf", False))
    if cnf is None:
        errors.append(f"{key}.conditionTypeCnf = {item.get('conditionTypeCnf')!r}: must be true or false")
    raw_triggers = item.get("triggers")
    triggers: list[Trigger] = []
    if not isinstance(raw_triggers, list) or not raw_triggers or len(raw_triggers) > MAX_TRIGGERS:
        errors.append(
            f"{key}.triggers = {raw_triggers!r}: must be a list of 1 to {MAX_TRIGGERS} triggers "
            "(an iFC without one would match every request)"
        )
    else:
        for i, raw in enumerate(raw_triggers):
            trigger = _trigger(f"{key}.triggers[{i}]", raw, errors)
            if trigger is not None:
                triggers.append(trigger)
    if len(errors) > before:
        return None
    return Ifc(priority, server, DEFAULT_HANDLING[handling], cnf, tuple(triggers))


def _trigger(key: str, raw: Any, errors: list[str]) -> Trigger | None:
    before = len(errors)
    if not known_object(key, raw, (*TRIGGER_KINDS, "group", "negated"), errors, f"one of {', '.join(TRIGGER_KINDS)}"):
        return None
    kinds = [k for k in TRIGGER_KINDS if k in raw]
    if len(kinds) != 1:
        errors.append(f"{key}: needs exactly one of {', '.join(TRIGGER_KINDS)}; has {kinds or 'none'}")
    group = _number(raw.get("group", 0))
    if group is None:
        errors.append(f"{key}.group = {raw.get('group')!r}: must be a whole number >= 0")
    negated = _flag(raw.get("negated", False))
    if negated is None:
        errors.append(f"{key}.negated = {raw.get('negated')!r}: must be true or false")
    value = _trigger_value(key, kinds[0], raw[kinds[0]], errors) if len(kinds) == 1 else None
    if len(errors) > before:
        return None
    return Trigger(kinds[0], value, group, negated)


def _trigger_value(key: str, kind: str, value: Any, errors: list[str]) -> Any:
    if kind == "method":
        if isinstance(value, str) and _TOKEN.match(value):
            return value.upper()
        errors.append(f"{key}.method = {value!r}: must be a SIP method, e.g. INVITE")
    elif kind == "sessionCase":
        if value in SESSION_CASES:
            return SESSION_CASES[value]
        errors.append(f"{key}.sessionCase = {value!r}: must be one of {', '.join(SESSION_CASES)}")
    elif kind == "requestUri":
        if isinstance(value, str) and value.strip():
            return value
        errors.append(f"{key}.requestUri = {value!r}: must be a non-empty string (a regular expression)")
    else:
        name_key = "name" if kind == "header" else "line"
        if (
            isinstance(value, Mapping)
            and set(value) <= {name_key, "content"}
            and isinstance(value.get(name_key), str)
            and (_TOKEN.match(value[name_key]) if kind == "header" else re.fullmatch(r"[a-z]", value[name_key]))
            and isinstance(value.get("content", ""), str)
        ):
            return (value[name_key], value.get("content", ""))
        example = "{name: Event, content: presence}" if kind == "header" else "{line: m, content: audio}"
        errors.append(f"{key}.{kind} = {value!r}: must be an object with {name_key} and optional content, e.g. {example}")
    return None


def as_json(ifcs: tuple[Ifc, ...]) -> list[dict]:
    """The iFCs for subscribers.json, numbers already as open5gs stores them."""
    out = []
    for ifc in ifcs:
        triggers = []
        for t in ifc.triggers:
            entry: dict[str, Any] = {"group": t.group, "negated": int(t.negated)}
            if t.kind in ("header", "sdpLine"):
                entry[t.kind] = {"name" if t.kind == "header" else "line": t.value[0], "content": t.value[1]}
            else:
                entry[t.kind] = t.value
            triggers.append(entry)
        out.append(
            {
                "priority": ifc.priority,
                "applicationServer": ifc.application_server,
                "defaultHandling": ifc.default_handling,
                "conditionTypeCnf": int(ifc.condition_type_cnf),
                "triggers": triggers,
            }
        )
    return out

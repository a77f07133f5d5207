"""Subscribers declared in stack config (`subscribers`): parsed and validated, all errors at once.

A subscriber is what open5gs' HSS and PCRF read from MongoDB: IMSI, MSISDN, Milenage K and OPc,
AMF, the APNs it may use and its aggregate bit rate. K and OPc are secrets: `Subscriber.__repr__`
hides them, and the components put them only into Kubernetes Secrets.

open5gs' HSS finds a subscriber from the first run of digits in the IMPI and builds the IMPUs
from the MSISDN, so the IMPI is `<imsi>@<ims domain>` and every subscriber needs an MSISDN.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from . import ifc as ifc_config
from .config_objects import known_object

# APNs (DNNs) the SMF serves; a subscriber may use any of them.
APNS = ("internet", "ims")
DEFAULT_APNS = APNS
DEFAULT_AMF = "8000"
DEFAULT_AMBR = "1 Gbps"
# open5gs' bit-rate units (lib/proto/types.h OGS_BITRATE_*), as its documents store them.
BITRATE_UNITS = {"bps": 0, "Kbps": 1, "Mbps": 2, "Gbps": 3, "Tbps": 4}
KNOWN_FIELDS = ("imsi", "msisdn", "k", "opc", "amf", "apns", "ambr", "ifcs")

_HEX32 = re.compile(r"^[0-9a-fA-F]{32}$")
_HEX4 = re.compile(r"^[0-9a-fA-F]{4}$")
_MSISDN = re.compile(r"^[0-9]{5,15}$")
_BITRATE = re.compile(r"^([1-9][0-9]{0,5}) ?(bps|Kbps|Mbps|Gbps|Tbps)$")


@dataclass(frozen=True)
class BitRate:
    value: int
    unit: int  # BITRATE_UNITS value

    @classmethod
    def parse(cls, text: str) -> BitRate | None:
        m = _BITRATE.match(text)
        return cls(int(m.group(1)), BITRATE_UNITS[m.group(2)]) if m else None


@dataclass(frozen=True)
class Subscriber:
    imsi: str
    msisdn: str
    k: str = field(repr=False)
    opc: str = field(repr=False)
    amf: str
    apns: tuple[str, ...]
    ambr_uplink: BitRate
    ambr_downlink: BitRate
    # Initial Filter Criteria the HSS serves in the SAA (components/ifc.py).
    ifcs: tuple[ifc_config.Ifc, ...] = ()

    def impi(self, ims_domain: str) -> str:
        return f"{self.imsi}@{ims_domain}"

    def impus(self, ims_domain: str) -> tuple[str, ...]:
        """The IMPUs open5gs' HSS gives this subscriber (P-Associated-URI)."""
        return (f"sip:{self.msisdn}@{ims_domain}", f"tel:{self.msisdn}")


def parse(raw: Any, mcc: str, mnc: str, errors: list[str]) -> tuple[Subscriber, ...]:
    """`subscribers` stack config -> Subscribers; every problem appended to `errors`.

    `mnc` as configured (2 or 3 digits): an IMSI starts with MCC and MNC exactly as the
    SIM holds them. Secrets never appear in a message.
    """
    if raw is None:
        return ()
    if not isinstance(raw, list):
        errors.append("subscribers: must be a list of {imsi, msisdn, k, opc, ...} objects")
        return ()
    parsed: list[Subscriber] = []
    for i, item in enumerate(raw):
        sub = _one(f"subscribers[{i}]", item, mcc + mnc, errors)
        if sub is not None:
            parsed.append(sub)
    for attr in ("imsi", "msisdn"):
        seen: dict[str, int] = {}
        for i, item in enumerate(raw):
            value = item.get(attr) if isinstance(item, Mapping) else None
            if isinstance(value, str) and value:
                if value in seen:
                    errors.append(
                        f"subscribers[{i}].{attr} = {value!r}: already used by subscribers[{seen[value]}]; "
                        f"every subscriber needs its own {attr}"
                    )
                seen.setdefault(value, i)
    return tuple(parsed)


def _one(key: str, item: Any, plmn: str, errors: list[str]) -> Subscriber | None:
    before = len(errors)
    if not known_object(key, item, KNOWN_FIELDS, errors, "imsi, msisdn, k and opc"):
        return None
    imsi = str(item.get("imsi") or "")
    if not re.fullmatch(r"[0-9]{14,15}", imsi):
        errors.append(f"{key}.imsi = {imsi!r}: must be 14 or 15 digits, e.g. {plmn}0000000001")
    elif not imsi.startswith(plmn):
        errors.append(f"{key}.imsi = {imsi!r}: must start with this network's MCC+MNC {plmn}")
    msisdn = str(item.get("msisdn") or "")
    if not _MSISDN.match(msisdn):
        errors.append(
            f"{key}.msisdn = {msisdn!r}: required, 5 to 15 digits (the HSS builds the IMPUs "
            "sip:<msisdn>@<ims domain> and tel:<msisdn> from it)"
        )
    for name in ("k", "opc"):
        value = item.get(name)
        if not isinstance(value, str) or not _HEX32.match(value):
            shown = "missing" if value in (None, "") else f"<secret of {len(str(value))} characters>"
            errors.append(f"{key}.{name} = {shown}: must be 32 hexadecimal digits (128 bits)")
    amf = str(item.get("amf") or DEFAULT_AMF)
    if not _HEX4.match(amf):
        errors.append(f"{key}.amf = {amf!r}: must be 4 hexadecimal digits, e.g. 8000")
    apns = item.get("apns", list(DEFAULT_APNS))
    if not isinstance(apns, list) or not apns or any(a not in APNS for a in apns) or len(set(apns)) != len(apns):
        errors.append(f"{key}.apns = {apns!r}: must be a non-empty list of distinct APNs from {', '.join(APNS)}")
    ambr = item.get("ambr", {})
    rates: dict[str, BitRate | None] = {}
    if not isinstance(ambr, Mapping) or set(ambr) - {"uplink", "downlink"}:
        errors.append(f"{key}.ambr = {ambr!r}: must be an object with uplink and/or downlink, e.g. {{uplink: 1 Gbps}}")
    else:
        for direction in ("uplink", "downlink"):
            text = str(ambr.get(direction, DEFAULT_AMBR))
            rates[direction] = BitRate.parse(text)
            if rates[direction] is None:
                errors.append(
                    f"{key}.ambr.{direction} = {text!r}: must be a number and a unit "
                    f"({', '.join(BITRATE_UNITS)}), e.g. 100 Mbps"
                )
    ifcs = ifc_config.parse(f"{key}.ifcs", item.get("ifcs"), errors)
    if len(errors) > before:
        return None
    return Subscriber(
        imsi=imsi,
        msisdn=msisdn,
        k=item["k"].lower(),
        opc=item["opc"].lower(),
        amf=amf.lower(),
        apns=tuple(apns),
        ambr_uplink=rates["uplink"],
        ambr_downlink=rates["downlink"],
        ifcs=ifcs,
    )

"""The `charging` stack setting: online charging (Ro) on or off, tariffs and initial balances.

Parsed once into an immutable `Charging` plan; every bad value is appended to the caller's
error list with its path (e.g. `charging.destinations[1].pricePerMinute`), the value and what
is allowed, so settings.py reports it with all the others and nothing is created.

Tariffs and balances are data, not configuration of a daemon: the CGRateS loader Job pushes
them through CGRateS' API (config/cgrates/load_plan.py), so a tariff change re-runs that Job
and rolls no pod.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

# What the S-CSCF does with a call when CGRateS cannot be asked (no Ro peer, no answer).
WHEN_UNREACHABLE = ("refuse", "allow")
MAX_INCREMENT_SECONDS = 3600
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$")
# Dialled digits or SIP user parts, as they appear in the called party's user part.
_PREFIX = re.compile(r"^[A-Za-z0-9+#*._-]{1,32}$")
# The user part of the caller's IMPU (an MSISDN, or a name in a lab).
_SUBSCRIBER = re.compile(r"^[A-Za-z0-9+._-]{1,64}$")
_CURRENCY = re.compile(r"^[A-Z]{3}$")
_KEYS = {"enabled", "whenUnreachable", "currency", "destinations", "balances"}
_DESTINATION_KEYS = {"name", "prefixes", "pricePerMinute", "incrementSeconds"}
_BALANCE_KEYS = {"subscriber", "amount"}


@dataclass(frozen=True)
class Destination:
    """A set of called-number prefixes rated at one price per minute, billed per `increment_seconds`."""

    name: str
    prefixes: tuple[str, ...]
    price_per_minute: Decimal
    increment_seconds: int


@dataclass(frozen=True)
class Balance:
    """Money a subscriber's account starts with (set once, when the account is created)."""

    subscriber: str
    amount: Decimal


@dataclass(frozen=True)
class Charging:
    enabled: bool = False
    when_unreachable: str = "refuse"
    currency: str = "EUR"
    destinations: tuple[Destination, ...] = ()
    balances: tuple[Balance, ...] = ()


def _decimal(path: str, raw: Any, errors: list[str]) -> Decimal | None:
    if isinstance(raw, bool) or raw is None:
        errors.append(f"{path} = {raw!r}: must be a number of money units, e.g. 0.10")
        return None
    try:
        value = Decimal(str(raw))
    except InvalidOperation:
        errors.append(f"{path} = {raw!r}: must be a number of money units, e.g. 0.10")
        return None
    if not value.is_finite() or value < 0:
        errors.append(f"{path} = {raw!r}: must be zero or more")
        return None
    return value


def _unknown_keys(path: str, item: Mapping[str, Any], allowed: set[str], errors: list[str]) -> None:
    for key in sorted(set(item) - allowed):
        errors.append(f"{path}.{key}: unknown key; allowed: {', '.join(sorted(allowed))}")


def _destination(path: str, item: Any, errors: list[str]) -> Destination | None:
    if not isinstance(item, Mapping):
        errors.append(f"{path} = {item!r}: must be a mapping with name, prefixes, pricePerMinute, incrementSeconds")
        return None
    _unknown_keys(path, item, _DESTINATION_KEYS, errors)
    name = item.get("name")
    if not (isinstance(name, str) and _NAME.match(name)):
        errors.append(f"{path}.name = {name!r}: must be 1-32 of A-Z a-z 0-9 _ - (starting with a letter or digit)")
    prefixes = item.get("prefixes")
    if not (isinstance(prefixes, list) and prefixes):
        errors.append(f'{path}.prefixes = {prefixes!r}: must be a non-empty list of called-number prefixes, e.g. ["+4930"]')
        prefixes = []
    for i, prefix in enumerate(prefixes):
        if not (isinstance(prefix, str) and _PREFIX.match(prefix)):
            errors.append(f"{path}.prefixes[{i}] = {prefix!r}: must be 1-32 of A-Z a-z 0-9 + # * . _ -")
    price = _decimal(f"{path}.pricePerMinute", item.get("pricePerMinute"), errors)
    increment = item.get("incrementSeconds", 1)
    if isinstance(increment, bool) or not isinstance(increment, int) or not 1 <= increment <= MAX_INCREMENT_SECONDS:
        errors.append(f"{path}.incrementSeconds = {increment!r}: must be a whole number of seconds, 1 to {MAX_INCREMENT_SECONDS}")
        increment = None
    if price is None or increment is None or not isinstance(name, str):
        return None
    return Destination(name=name, prefixes=tuple(str(p) for p in prefixes), price_per_minute=price, increment_seconds=increment)


def _balance(path: str, item: Any, errors: list[str]) -> Balance | None:
    if not isinstance(item, Mapping):
        errors.append(f"{path} = {item!r}: must be a mapping with subscriber and amount")
        return None
    _unknown_keys(path, item, _BALANCE_KEYS, errors)
    subscriber = item.get("subscriber")
    if not (isinstance(subscriber, str) and _SUBSCRIBER.match(subscriber)):
        errors.append(
            f"{path}.subscriber = {subscriber!r}: must be the user part of the subscriber's IMPU "
            "(e.g. its MSISDN 001010000000001): 1-64 of A-Z a-z 0-9 + . _ -"
        )
        subscriber = None
    amount = _decimal(f"{path}.amount", item.get("amount"), errors)
    if subscriber is None or amount is None:
        return None
    return Balance(subscriber=subscriber, amount=amount)


def _items(path: str, raw: Any, errors: list[str]) -> list[Any]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        errors.append(f"{path} = {raw!r}: must be a list")
        return []
    return raw


def parse_charging(raw: Any, errors: list[str]) -> Charging:
    """The `charging` setting (a mapping; None or {} means off) -> Charging."""
    if raw is None:
        return Charging()
    if not isinstance(raw, Mapping):
        errors.append(f"charging = {raw!r}: must be a mapping such as {{enabled: true, destinations: [...], balances: [...]}}")
        return Charging()
    _unknown_keys("charging", raw, _KEYS, errors)
    enabled = raw.get("enabled", False)
    if not isinstance(enabled, bool):
        errors.append(f"charging.enabled = {enabled!r}: must be a boolean, true or false")
        enabled = False
    when = raw.get("whenUnreachable", "refuse")
    if when not in WHEN_UNREACHABLE:
        errors.append(f"charging.whenUnreachable = {when!r}: must be one of {', '.join(WHEN_UNREACHABLE)}")
    currency = raw.get("currency", "EUR")
    if not (isinstance(currency, str) and _CURRENCY.match(currency)):
        errors.append(f"charging.currency = {currency!r}: must be an ISO 4217 code of 3 capital letters, e.g. EUR")

    destinations = [
        d for i, item in enumerate(_items("charging.destinations", raw.get("destinations"), errors))
        if (d := _destination(f"charging.destinations[{i}]", item, errors)) is not None
    ]
    balances = [
        b for i, item in enumerate(_items("charging.balances", raw.get("balances"), errors))
        if (b := _balance(f"charging.balances[{i}]", item, errors)) is not None
    ]
    _duplicates("charging.destinations", "name", [d.name for d in destinations], errors)
    _duplicates("charging.destinations", "prefix", [p for d in destinations for p in d.prefixes], errors)
    _duplicates("charging.balances", "subscriber", [b.subscriber for b in balances], errors)
    if enabled and not destinations:
        errors.append(
            "charging.destinations = []: with charging.enabled every call is rated, so at least one destination "
            "is needed (calls to numbers no destination matches are refused)"
        )
    return Charging(
        enabled=enabled,
        when_unreachable=when if when in WHEN_UNREACHABLE else "refuse",
        currency=currency if isinstance(currency, str) else "EUR",
        destinations=tuple(destinations),
        balances=tuple(balances),
    )


def _duplicates(path: str, what: str, values: list[str], errors: list[str]) -> None:
    seen: set[str] = set()
    for value in values:
        if value in seen:
            errors.append(f"{path}: {what} {value!r} appears twice; each {what} must be unique")
        seen.add(value)

"""CGRateS (cgr-engine) configuration and the charging plan, rendered from settings.

`cgrates_json` is the engine's whole config: the Diameter agent the S-CSCF's ims_charging
talks Ro to, SessionS, RALs, chargers, attributes, CDRs and the API (JSON-RPC over HTTP).
Passwords never appear in it: CGRateS replaces `*env:NAME` with the environment variable, which
the pod takes from a Kubernetes Secret.

The Diameter agent's templates follow what Kamailio's ims_charging sends and reads, not
CGRateS' samples: ims_charging sends Requested-/Used-Service-Unit inside
Multiple-Services-Credit-Control (RFC 4006 8.16, AVP 456) and reads the grant only from
Multiple-Services-Credit-Control/Granted-Service-Unit/CC-Time (431/420), treating zero or a
Result-Code other than 2001 as a refusal. The subscriber is the user part of
Subscription-Id-Data (443/444, the caller's P-Asserted-Identity), the destination the user part
of Service-Information/IMS-Information/Called-Party-Address (873/876/832, 3GPP TS 32.299).

`plan` is the charging setting as the list of API calls the loader Job makes
(config/cgrates/load_plan.py), in order; `plan_json` is that list as the file the Job reads.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from ..settings import ROOT, Settings

API_PORT = 2080  # HTTP: /jsonrpc, the loader's and operators' way in
DIAMETER_PORT = 3868
STORDB_PORT = 5432
VALKEY_PORT = 6379
STORDB_NAME = "cgrates"
STORDB_USER = "cgrates"
# Environment variables cgr-engine reads its passwords from (`*env:` in cgrates.json).
VALKEY_PASSWORD_ENV = "CGRATES_VALKEY_PASSWORD"
STORDB_PASSWORD_ENV = "CGRATES_STORDB_PASSWORD"
DICTIONARIES_PATH = "/usr/share/cgrates/diameter/dict/"
SHIPPED = ROOT / "config" / "cgrates"
LOADER_SCRIPT = SHIPPED / "load_plan.py"
# PostgreSQL schema of the StorDB: CGRateS v0.10.4 data/storage/postgres and its schema versions (run once, on
# an empty database: CGRateS' own Flush drops the tables first).
STORDB_SCHEMA = ("create_cdrs_tables.sql", "create_tariffplan_tables.sql", "set_versions.sql")

TPID = "ims-core"
CATEGORY = "call"
# RFC 4006 Result-Code values the CCA carries when CGRateS says no.
DIAMETER_SUCCESS = 2001
DIAMETER_CREDIT_LIMIT_REACHED = 4012
DIAMETER_RATING_FAILED = 5031
# ims_charging's defaults (voice_service_identifier 1000, voice_rating_group 100) are echoed.
SERVICE_CONTEXT_RELEASE = "8"


def tenant(settings: Settings) -> str:
    """Every account, rating profile and CDR lives in one tenant: the IMS home domain."""
    return settings.ims_domain


def service_context_id(settings: Settings) -> str:
    """What ims_charging sends as Service-Context-Id (461): `ext.<MNC>.<MCC>.<release>.32260@3gpp.org`
    (TS 32.299 7.1.12, IMS charging TS 32.260), with the modparams the S-CSCF renders."""
    return f"ext.{settings.mnc}.{settings.mcc}.{SERVICE_CONTEXT_RELEASE}.32260@3gpp.org"


def _user_part(avp_path: str) -> str:
    """An RSR value: the user part of a SIP/SIPS/tel URI (or the bare value) found at `avp_path`.

    No ';' or '|' in the expression: CGRateS splits RSR values on both before compiling them
    (a processor with such a value is dropped without a word: tried live)."""
    return f"~*req.{avp_path}:s/^(?:[a-z]+:)?([A-Za-z0-9+._-]+).*$/${{1}}/"


_MSCC = "Multiple-Services-Credit-Control"


def _request_fields(settings: Settings, *, requested: bool, used: bool) -> list[dict[str, Any]]:
    fields: list[dict[str, Any]] = [
        {"tag": "ToR", "path": "*cgreq.ToR", "type": "*constant", "value": "*voice"},
        {"tag": "OriginID", "path": "*cgreq.OriginID", "type": "*variable", "value": "~*req.Session-Id", "mandatory": True},
        {"tag": "OriginHost", "path": "*cgreq.OriginHost", "type": "*remote_host", "mandatory": True},
        {"tag": "RequestType", "path": "*cgreq.RequestType", "type": "*constant", "value": "*prepaid"},
        {"tag": "Tenant", "path": "*cgreq.Tenant", "type": "*constant", "value": tenant(settings)},
        {"tag": "Category", "path": "*cgreq.Category", "type": "*constant", "value": CATEGORY},
        {"tag": "Account", "path": "*cgreq.Account", "type": "*variable",
         "value": _user_part("Subscription-Id.Subscription-Id-Data"), "mandatory": True},
        {"tag": "Destination", "path": "*cgreq.Destination", "type": "*variable",
         "value": _user_part("Service-Information.IMS-Information.Called-Party-Address"), "mandatory": True},
        {"tag": "SetupTime", "path": "*cgreq.SetupTime", "type": "*variable", "value": "~*req.Event-Timestamp"},
        {"tag": "AnswerTime", "path": "*cgreq.AnswerTime", "type": "*variable", "value": "~*req.Event-Timestamp"},
    ]
    if requested:
        fields.append({"tag": "Usage", "path": "*cgreq.Usage", "type": "*variable",
                       "value": f"~*req.{_MSCC}.Requested-Service-Unit.CC-Time:s/(.*)/${{1}}s/", "mandatory": True})
    if used:
        fields.append({"tag": "LastUsed", "path": "*cgreq.LastUsed", "type": "*variable",
                       "value": f"~*req.{_MSCC}.Used-Service-Unit.CC-Time:s/(.*)/${{1}}s/", "mandatory": True})
    return fields


def _reply_fields(*, grant: bool) -> list[dict[str, Any]]:
    """Result-Code (and the grant, inside MSCC, where ims_charging reads it)."""
    refused = "*notempty:~*cgrep.Error:"
    fields: list[dict[str, Any]] = [
        # Session-Id, Origin-*, Auth-Application-Id, CC-Request-Type/-Number: without them cdp
        # cannot match the answer to its request and ims_charging times out.
        {"tag": "CCATemplate", "type": "*template", "value": "*cca"},
        # No credit: CGRateS answers with an error naming it; anything else (no account, no
        # rate for the destination) is a rating failure. Either way ims_charging refuses the call.
        {"tag": "CreditLimit", "filters": [refused, "*rsr::~*cgrep.Error(~CREDIT)"],
         "path": "*rep.Result-Code", "type": "*constant", "value": str(DIAMETER_CREDIT_LIMIT_REACHED), "blocker": True},
        # Nothing to grant (an empty balance): say so, rather than success with zero seconds.
        {"tag": "NoCredit", "filters": ["*string:~*cgrep.MaxUsage:0s"], "path": "*rep.Result-Code",
         "type": "*constant", "value": str(DIAMETER_CREDIT_LIMIT_REACHED), "blocker": True},
        {"tag": "RatingFailed", "filters": [refused], "path": "*rep.Result-Code", "type": "*constant",
         "value": str(DIAMETER_RATING_FAILED), "blocker": True},
        {"tag": "ResultCode", "path": "*rep.Result-Code", "type": "*constant", "value": str(DIAMETER_SUCCESS)},
    ]
    if grant:
        fields += [
            {"tag": "GrantedTime", "path": f"*rep.{_MSCC}.Granted-Service-Unit.CC-Time", "type": "*variable",
             "value": "~*cgrep.MaxUsage{*duration_seconds}", "mandatory": True},
            {"tag": "ServiceIdentifier", "path": f"*rep.{_MSCC}.Service-Identifier", "type": "*variable",
             "value": f"~*req.{_MSCC}.Service-Identifier"},
            {"tag": "RatingGroup", "path": f"*rep.{_MSCC}.Rating-Group", "type": "*variable",
             "value": f"~*req.{_MSCC}.Rating-Group"},
            {"tag": "MsccResultCode", "path": f"*rep.{_MSCC}.Result-Code", "type": "*constant",
             "value": str(DIAMETER_SUCCESS)},
        ]
    return fields


def request_processors(settings: Settings) -> list[dict[str, Any]]:
    """One processor per CC-Request-Type (RFC 4006 8.3: 1 INITIAL, 2 UPDATE, 3 TERMINATION)."""
    context = f"*string:~*req.Service-Context-Id:{service_context_id(settings)}"

    def processor(name: str, request_type: int, flags: list[str], *, requested: bool, used: bool, grant: bool):
        return {
            "id": f"ims_charging_{name}",
            "filters": ["*string:~*vars.*cmd:CCR", f"*string:~*req.CC-Request-Type:{request_type}", context],
            "flags": flags,
            "request_fields": _request_fields(settings, requested=requested, used=used),
            "reply_fields": _reply_fields(grant=grant),
        }

    return [
        processor("initial", 1, ["*initiate", "*accounts"], requested=True, used=False, grant=True),
        processor("update", 2, ["*update", "*accounts"], requested=True, used=True, grant=True),
        processor("terminate", 3, ["*terminate", "*accounts", "*cdrs"], requested=False, used=True, grant=False),
    ]


def cgrates_json(
    settings: Settings,
    *,
    listen_address: str = "0.0.0.0",
    valkey_host: str | None = None,
    stordb_host: str = "cgrates-stordb",
    dictionaries_path: str = DICTIONARIES_PATH,
) -> str:
    """The rendered cgrates.json. In a pod CGRateS listens on every address; the live tier
    passes its loopback address, Valkey's and the StorDB's, and the dictionaries it built."""
    scscf, cgrates = settings.nf("scscf"), settings.nf("cgrates")
    valkey = settings.nf("valkey")
    internal = ["*internal"]
    config = {
        "general": {"node_id": f"{settings.stack}-cgrates", "default_tenant": tenant(settings),
                    "default_category": CATEGORY, "default_request_type": "*prepaid", "log_level": 6,
                    "reply_timeout": "5s"},
        # Only the HTTP API leaves the pod; the other RPC listeners stay on its loopback.
        "listen": {"rpc_json": "127.0.0.1:2012", "rpc_gob": "127.0.0.1:2013",
                   "http": f"{listen_address}:{API_PORT}"},
        # Balances, rating data and accounts: Valkey, database 3, persistent (AOF).
        "data_db": {"db_type": "*redis", "db_host": valkey_host or valkey.address or "valkey",
                    "db_port": VALKEY_PORT, "db_name": str(settings.valkey_databases["cgrates"]),
                    "db_password": f"*env:{VALKEY_PASSWORD_ENV}"},
        # CDRs and the tariff plan's staging tables: PostgreSQL on its own volume.
        "stor_db": {"db_type": "*postgres", "db_host": stordb_host, "db_port": STORDB_PORT,
                    "db_name": STORDB_NAME, "db_user": STORDB_USER, "db_password": f"*env:{STORDB_PASSWORD_ENV}"},
        "rals": {"enabled": True},
        "schedulers": {"enabled": True},
        "cdrs": {"enabled": True, "chargers_conns": internal, "rals_conns": internal},
        "chargers": {"enabled": True, "attributes_conns": []},
        "attributes": {"enabled": True},
        "sessions": {"enabled": True, "listen_bijson": "", "chargers_conns": internal, "rals_conns": internal,
                     "cdrs_conns": internal},
        "apiers": {"enabled": True, "scheduler_conns": internal},
        "diameter_agent": {
            "enabled": True,
            "listen": f"{listen_address}:{DIAMETER_PORT}",
            "listen_net": "tcp",
            "dictionaries_path": dictionaries_path,
            "sessions_conns": internal,
            "origin_host": cgrates.fqdn,
            "origin_realm": cgrates.realm,
            "vendor_id": 10415,
            "product_name": "ims-core CGRateS",
            "request_processors": request_processors(settings),
        },
    }
    del scscf  # the Ro peer is whoever connects; the NetworkPolicy admits only the S-CSCF
    return json.dumps(config, indent=2, sort_keys=False) + "\n"


# --- the charging plan --------------------------------------------------------------------


def _money(value: Decimal) -> float:
    return float(value)


def plan(settings: Settings) -> list[dict[str, Any]]:
    """The API calls that load `settings.charging`, in order, as {method, params}.

    Tariffs go into the StorDB as tariff plan `ims-core` and are then loaded into the DataDB
    (LoadTariffPlanFromStorDb): setting them twice changes nothing. Balances are only set on
    accounts that do not exist yet (the loader asks first): a re-run never tops up or resets
    money already spent.
    """
    charging, ten = settings.charging, tenant(settings)
    calls: list[dict[str, Any]] = []
    bindings = []
    for d in charging.destinations:
        calls.append({"method": "APIerSv1.SetTPDestination",
                      "params": {"TPid": TPID, "ID": f"DST_{d.name}", "Prefixes": list(d.prefixes)}})
        calls.append({"method": "APIerSv1.SetTPRate", "params": {"TPid": TPID, "ID": f"RT_{d.name}", "RateSlots": [
            {"ConnectFee": 0, "Rate": _money(d.price_per_minute), "RateUnit": "60s",
             "RateIncrement": f"{d.increment_seconds}s", "GroupIntervalStart": "0s"}]}})
        calls.append({"method": "APIerSv1.SetTPDestinationRate", "params": {"TPid": TPID, "ID": f"DR_{d.name}", "DestinationRates": [
            {"DestinationId": f"DST_{d.name}", "RateId": f"RT_{d.name}", "RoundingMethod": "*up",
             "RoundingDecimals": 4, "MaxCost": 0, "MaxCostStrategy": ""}]}})
        bindings.append({"DestinationRatesId": f"DR_{d.name}", "TimingId": "*any", "Weight": 10})
    if bindings:
        calls.append({"method": "APIerSv1.SetTPRatingPlan",
                      "params": {"TPid": TPID, "ID": "RP_ims_core", "RatingPlanBindings": bindings}})
        calls.append({"method": "APIerSv1.SetTPRatingProfile", "params": {
            "TPid": TPID, "LoadId": TPID, "Tenant": ten, "Category": CATEGORY, "Subject": "*any",
            "RatingPlanActivations": [{"ActivationTime": "2000-01-01T00:00:00Z", "RatingPlanId": "RP_ims_core",
                                       "FallbackSubjects": ""}]}})
    # SessionS needs a charger: one run, the account's own (*default), no attribute rewriting.
    calls.append({"method": "APIerSv1.SetTPCharger", "params": {
        "TPid": TPID, "Tenant": ten, "ID": "DEFAULT", "FilterIDs": [], "RunID": "*default",
        "AttributeIDs": ["*none"], "Weight": 0}})
    calls.append({"method": "APIerSv1.LoadTariffPlanFromStorDb",
                  "params": {"TPid": TPID, "DryRun": False, "Validate": True}})
    for b in charging.balances:
        calls.append({"method": "APIerSv1.SetBalance", "if_account_missing": True, "params": {
            "Tenant": ten, "Account": b.subscriber, "BalanceType": "*monetary", "Value": _money(b.amount),
            "Balance": {"ID": "initial"}}})
    return calls


def plan_json(settings: Settings) -> str:
    """`plan` as the JSON document the loader Job reads (stable: same settings, same bytes)."""
    return json.dumps({"tenant": tenant(settings), "calls": plan(settings)}, indent=1, sort_keys=True) + "\n"


def stordb_schema() -> dict[str, str]:
    """The StorDB's table definitions, keyed by file name (run in this order on an empty database)."""
    return {name: (SHIPPED / "postgres" / name).read_text(encoding="utf-8") for name in STORDB_SCHEMA}

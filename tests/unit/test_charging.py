"""Charging (CGRateS over Ro): the setting, the rendered engine config and plan, the resources."""

from __future__ import annotations

import json
import re

import pytest

from components.render import cgrates as render_cgrates
from components.render import kamailio as render_kamailio
from components.settings import SettingsError, from_mapping
from tests.tooling import ROOT
from tests.unit.conftest import BASE_CONFIG, container, pod_spec, run_program

STORDB_PASSWORD = "unit-stordb-password-01"
SECRET = ("cgratesStorDbPassword",)
PLAN = {
    "enabled": True,
    "whenUnreachable": "allow",
    "destinations": [
        {"name": "national", "prefixes": ["+4930", "030"], "pricePerMinute": 0.10, "incrementSeconds": 60},
        {"name": "mobile", "prefixes": ["+49151"], "pricePerMinute": "0.25", "incrementSeconds": 1},
    ],
    "balances": [{"subscriber": "001010000000001", "amount": 5}],
}


def settings(**config):
    return from_mapping({**BASE_CONFIG, **config}, stack="unit")


def charged(**plan):
    return settings(charging={**PLAN, **plan}, cgratesStorDbPassword=STORDB_PASSWORD)


# --- the setting ------------------------------------------------------------------------


def test_charging_is_off_by_default_and_deploys_nothing():
    assert settings().charging.enabled is False
    run = run_program()
    assert run.error is None, run.error
    assert not [r for r in run.resources if r.name.startswith("cgrates")]


def test_every_bad_charging_value_is_reported_at_once_with_its_path():
    with pytest.raises(SettingsError) as error:
        settings(charging={
            "enabled": True, "whenUnreachable": "maybe", "currency": "euro", "colour": "red",
            "destinations": [
                {"name": "a b", "prefixes": [], "pricePerMinute": -1, "incrementSeconds": 0},
                {"name": "x", "prefixes": ["+49", "+49"], "pricePerMinute": 1},
                {"name": "y", "prefixes": ["+33"], "pricePerMinute": "cheap"},
            ],
            "balances": [{"subscriber": "sip:alice@x", "amount": 1}, {"subscriber": "bob"}],
        })
    text = "\n".join(error.value.errors)
    for expected in (
        "charging.whenUnreachable = 'maybe': must be one of refuse, allow",
        "charging.currency = 'euro'",
        "charging.colour: unknown key",
        "charging.destinations[0].name = 'a b'",
        "charging.destinations[0].prefixes = []",
        "charging.destinations[0].pricePerMinute = -1: must be zero or more",
        "charging.destinations[0].incrementSeconds = 0",
        "charging.destinations[2].pricePerMinute = 'cheap'",
        "charging.destinations: prefix '+49' appears twice",
        "charging.balances[0].subscriber = 'sip:alice@x'",
        "charging.balances[1].amount = None",
    ):
        assert expected in text, (expected, text)


def test_a_generated_stordb_password_when_none_is_set():
    run = run_program({"charging": PLAN})
    assert run.error is None, run.error
    assert run.mocks.named("cgrates-stordb-password").inputs["length"] >= 16
    assert not [r for r in run_program(CHARGED_CONFIG).resources if r.name == "cgrates-stordb-password"]


def test_charging_on_needs_a_destination():
    with pytest.raises(SettingsError, match=r"charging.destinations = \[\]: with charging.enabled"):
        settings(charging={"enabled": True}, cgratesStorDbPassword=STORDB_PASSWORD)


def test_charging_comes_as_json_from_the_cli():
    s = settings(charging=json.dumps(PLAN), cgratesStorDbPassword=STORDB_PASSWORD)
    assert [d.name for d in s.charging.destinations] == ["national", "mobile"]
    assert str(s.charging.destinations[1].price_per_minute) == "0.25"


# --- what CGRateS and Kamailio get ------------------------------------------------------


def test_engine_config_reads_and_writes_the_grant_inside_mscc_as_ims_charging_does():
    config = json.loads(render_cgrates.cgrates_json(charged()))
    processors = {p["id"]: p for p in config["diameter_agent"]["request_processors"]}
    initial, update, terminate = (processors[f"ims_charging_{n}"] for n in ("initial", "update", "terminate"))
    values = {f["tag"]: f.get("value") for f in initial["request_fields"]}
    assert values["Usage"].startswith("~*req.Multiple-Services-Credit-Control.Requested-Service-Unit.CC-Time")
    assert "Subscription-Id.Subscription-Id-Data" in values["Account"]
    assert "IMS-Information.Called-Party-Address" in values["Destination"]
    grant = [f for f in initial["reply_fields"] if f["tag"] == "GrantedTime"]
    assert grant[0]["path"] == "*rep.Multiple-Services-Credit-Control.Granted-Service-Unit.CC-Time"
    used = {f["tag"]: f.get("value") for f in update["request_fields"]}["LastUsed"]
    assert used.startswith("~*req.Multiple-Services-Credit-Control.Used-Service-Unit.CC-Time")
    assert "*cdrs" in terminate["flags"] and not [f for f in terminate["reply_fields"] if f["tag"] == "GrantedTime"]


def test_service_context_id_matches_what_the_scscf_sends():
    s = charged()
    defines = render_kamailio.defines(s, "scscf")
    mcc = re.search(r'#!define RO_MCC "(\d+)"', defines).group(1)
    mnc = re.search(r'#!define RO_MNC "(\d+)"', defines).group(1)
    assert render_cgrates.service_context_id(s) == f"ext.{mnc}.{mcc}.8.32260@3gpp.org"
    config = json.loads(render_cgrates.cgrates_json(s))
    for p in config["diameter_agent"]["request_processors"]:
        assert f"*string:~*req.Service-Context-Id:{render_cgrates.service_context_id(s)}" in p["filters"]


def test_scscf_talks_ro_to_cgrates_as_an_auth_application():
    s = charged()
    xml = render_kamailio.diameter_xml(s, "scscf")
    assert f'<Peer FQDN="{s.nf("cgrates").fqdn}"' in xml
    assert '<Auth id="4"' in xml and '<Acct id="4"' not in xml
    assert "#!define CHARGING_ALLOW_WHEN_UNREACHABLE" in render_kamailio.defines(s, "scscf")
    assert "CHARGING_ALLOW_WHEN_UNREACHABLE" not in render_kamailio.defines(charged(whenUnreachable="refuse"), "scscf")
    assert "WITH_CHARGING" not in render_kamailio.defines(settings(), "scscf")
    assert "cgrates" not in render_kamailio.diameter_xml(settings(), "scscf")


def test_engine_config_holds_no_password():
    text = render_cgrates.cgrates_json(charged())
    assert BASE_CONFIG["valkeyPassword"] not in text and STORDB_PASSWORD not in text
    config = json.loads(text)
    assert config["data_db"]["db_password"] == f"*env:{render_cgrates.VALKEY_PASSWORD_ENV}"
    assert config["data_db"]["db_name"] == "3"
    assert config["stor_db"]["db_type"] == "*postgres"


def test_plan_sets_tariffs_then_loads_them_and_sets_balances_only_on_new_accounts():
    calls = render_cgrates.plan(charged())
    methods = [c["method"] for c in calls]
    assert methods.index("APIerSv1.LoadTariffPlanFromStorDb") > methods.index("APIerSv1.SetTPRatingProfile")
    (rate,) = [c["params"] for c in calls if c["method"] == "APIerSv1.SetTPRate" and c["params"]["ID"] == "RT_national"]
    assert rate["RateSlots"] == [{"ConnectFee": 0, "Rate": 0.1, "RateUnit": "60s", "RateIncrement": "60s",
                                  "GroupIntervalStart": "0s"}]
    (balance,) = [c for c in calls if c["method"] == "APIerSv1.SetBalance"]
    assert balance["if_account_missing"] is True
    assert balance["params"]["Account"] == "001010000000001" and balance["params"]["Value"] == 5.0
    assert render_cgrates.plan_json(charged()) == render_cgrates.plan_json(charged())


def test_stordb_schema_is_cgrates_own_for_the_pinned_version():
    versions = (ROOT / "scripts" / "tool-versions.env").read_text()
    pinned = re.search(r"^CGRATES_VERSION=(\S+)$", versions, re.M).group(1)
    dockerfile = (ROOT / "dockerfiles" / "cgrates" / "Dockerfile").read_text()
    assert f"ARG CGRATES_VERSION={pinned}" in dockerfile
    schema = render_cgrates.stordb_schema()
    assert "CREATE TABLE cdrs" in schema["create_cdrs_tables.sql"]
    assert "CREATE TABLE tp_rates" in schema["create_tariffplan_tables.sql"]


# --- resources --------------------------------------------------------------------------

CHARGED_CONFIG = {"charging": PLAN, "cgratesStorDbPassword": STORDB_PASSWORD}


@pytest.fixture(scope="module")
def charged_run():
    run = run_program(CHARGED_CONFIG)
    assert run.error is None, run.error
    return run


def test_a_stordb_password_in_plain_text_is_refused():
    run = run_program(CHARGED_CONFIG, plain_text=SECRET)
    assert "cgratesStorDbPassword = <not shown>: set in plain text in the stack config file" in str(run.error)
    assert STORDB_PASSWORD not in str(run.error)
    assert not [r for r in run.resources if r.typ.startswith("kubernetes:")]


def test_cgrates_runs_one_non_root_engine_with_its_databases(charged_run):
    engine = charged_run.mocks.named("cgrates-deployment")
    assert engine.inputs["spec"]["replicas"] == 1
    assert engine.inputs["spec"]["strategy"] == {"type": "Recreate"}
    c = container(engine)
    assert c["securityContext"]["runAsNonRoot"] is True and c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert {e["name"] for e in c["env"]} == {render_cgrates.VALKEY_PASSWORD_ENV, render_cgrates.STORDB_PASSWORD_ENV}
    assert all("valueFrom" in e for e in c["env"])
    assert c["readinessProbe"]["tcpSocket"]["port"] == render_cgrates.DIAMETER_PORT
    stordb = charged_run.mocks.named("cgrates-stordb-statefulset")
    assert stordb.inputs["spec"]["replicas"] == 1
    claim = charged_run.mocks.named("cgrates-stordb-data").inputs
    assert claim["metadata"]["name"] == "data-cgrates-stordb-0"
    assert claim["spec"]["resources"]["requests"] == {"storage": "1Gi"}
    secret = charged_run.mocks.named("cgrates-auth")
    assert secret.typ == "kubernetes:core/v1:Secret"
    config = charged_run.mocks.named("cgrates-config")
    assert STORDB_PASSWORD not in json.dumps(config.inputs)


def test_ro_only_from_the_scscf_api_only_from_the_loader(charged_run):
    rules = charged_run.mocks.named("cgrates-ingress").inputs["spec"]["ingress"]
    by_port = {r["ports"][0]["port"]: [p["podSelector"]["matchLabels"]["app.kubernetes.io/name"] for p in r["from"]]
               for r in rules}
    assert by_port == {render_cgrates.DIAMETER_PORT: ["scscf"], render_cgrates.API_PORT: ["cgrates-loader"]}
    (stordb_rule,) = charged_run.mocks.named("cgrates-stordb-ingress").inputs["spec"]["ingress"]
    assert [p["podSelector"]["matchLabels"]["app.kubernetes.io/name"] for p in stordb_rule["from"]] == ["cgrates"]
    (valkey_rule,) = charged_run.mocks.named("valkey-ingress").inputs["spec"]["ingress"]
    assert "cgrates" in [p["podSelector"]["matchLabels"]["app.kubernetes.io/name"] for p in valkey_rule["from"]]


def test_loader_job_runs_the_shipped_script_on_the_plan(charged_run):
    job = charged_run.mocks.named("cgrates-loader")
    c = container(job)
    assert c["command"][:3] == ["python3", "/plan/load_plan.py", "/plan/plan.json"]
    assert c["command"][3] == f"http://cgrates:{render_cgrates.API_PORT}/jsonrpc"
    assert pod_spec(job)["restartPolicy"] == "OnFailure"


def _inputs(run, name):
    return json.dumps(run.mocks.named(name).inputs, sort_keys=True, default=str)


def test_a_tariff_change_changes_only_the_plan_and_the_loader_job(charged_run):
    cheaper = {**PLAN, "destinations": [{**PLAN["destinations"][0], "pricePerMinute": 0.05}, PLAN["destinations"][1]]}
    other = run_program({"charging": cheaper, "cgratesStorDbPassword": STORDB_PASSWORD})
    assert other.error is None, other.error
    changed = sorted(
        r.name for r in charged_run.resources
        if r.typ.startswith("kubernetes:") and _inputs(charged_run, r.name) != _inputs(other, r.name)
    )
    assert changed == ["cgrates-loader", "cgrates-plan"], changed

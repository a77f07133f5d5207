"""Subscriber iFCs (`subscribers[N].ifcs`): validation with every error at once, the document
open5gs 2.7 reads (`ifc`, int32 numbers), and the User-Data XML the Cx double builds from it the
way open5gs' HSS does (tests/doubles/open5gs_db.py)."""

from __future__ import annotations

import importlib.util
import json
import xml.etree.ElementTree as ET

import bson
import pytest

from components.render import open5gs as render_open5gs
from components.settings import SettingsError
from tests.doubles.cx_hss import Subscriber
from tests.doubles.open5gs_db import ifc_xml, read_ifcs
from tests.profiles import stack_settings

K = "465b5ce8b199b49faa5f0a2ee238a6bc"
OPC = "cd63cb71954a9f4e48a5994e37a02baf"
MMTEL = {
    "priority": 1,
    "applicationServer": "sip:mmtel.ims.example.net;transport=tcp",
    "defaultHandling": "terminate",
    "conditionTypeCnf": True,
    "triggers": [
        {"method": "invite", "group": 0},
        {"sessionCase": "terminating-registered", "group": 1},
        {"header": {"name": "Accept-Contact", "content": ".*mmtel.*"}, "group": 1, "negated": True},
        {"sdpLine": {"line": "m", "content": "audio"}, "group": 2},
        {"requestUri": "sip:conf.*", "group": 2},
    ],
}


def subscriber(**extra) -> dict:
    return {"imsi": "001010000000001", "msisdn": "10001", "k": K, "opc": OPC, **extra}


def provision_module():
    spec = importlib.util.spec_from_file_location("provision", render_open5gs.SHIPPED / "provision.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def document(*subs: dict) -> list[dict]:
    declared = json.loads(render_open5gs.subscribers_json(stack_settings("unit", subscribers=list(subs))))
    provision = provision_module()
    return [provision.document(sub, declared["stack"]) for sub in declared["subscribers"]]


def test_every_bad_ifc_field_is_reported_at_once_with_key_value_and_what_is_allowed():
    bad = subscriber(
        ifcs=[
            {
                "priority": -1,
                "applicationServer": "mmtel.example.net",
                "defaultHandling": "retry",
                "conditionTypeCnf": "maybe",
                "triggers": [{"method": "INVITE", "sessionCase": "originating"}, {"sessionCase": "orig"}, {"group": "x"}],
                "colour": "red",
            }
        ]
    )
    with pytest.raises(SettingsError) as err:
        stack_settings("unit", subscribers=[bad, subscriber(imsi="001010000000002", msisdn="10002", ifcs=[MMTEL, MMTEL])])
    text = str(err.value)
    for expected in (
        "subscribers[0].ifcs[0].colour: unknown field; allowed: priority, applicationServer",
        "subscribers[0].ifcs[0].priority = -1: must be a whole number >= 0",
        "subscribers[0].ifcs[0].applicationServer = 'mmtel.example.net': required, a SIP URI",
        "subscribers[0].ifcs[0].defaultHandling = 'retry': must be one of continue, terminate",
        "subscribers[0].ifcs[0].conditionTypeCnf = 'maybe': must be true or false",
        "subscribers[0].ifcs[0].triggers[0]: needs exactly one of method, sessionCase, header, sdpLine, requestUri; "
        "has ['method', 'sessionCase']",
        "subscribers[0].ifcs[0].triggers[1].sessionCase = 'orig': must be one of originating, terminating-registered",
        "subscribers[0].ifcs[0].triggers[2].group = 'x': must be a whole number >= 0",
        "subscribers[1].ifcs: 2 iFCs; open5gs 2.7 serves at most 1 per subscriber correctly",
    ):
        assert expected in text, (expected, text)
    assert K not in text and OPC not in text


def test_an_ifc_without_triggers_is_refused_it_would_match_every_request():
    with pytest.raises(SettingsError, match=r"subscribers\[0\]\.ifcs\[0\]\.triggers = \[\]: must be a list of 1 to 16"):
        stack_settings("unit", subscribers=[subscriber(ifcs=[{"applicationServer": "sip:as.example.net", "triggers": []}])])


def test_the_document_holds_the_ifc_in_open5gs_schema_with_int32_numbers():
    (doc,) = document(subscriber(ifcs=[MMTEL]))
    (ifc,) = doc["ifc"]
    assert ifc["priority"] == 1
    assert ifc["application_server"] == {"server_name": "sip:mmtel.ims.example.net;transport=tcp", "default_handling": 1}
    assert ifc["trigger_point"]["condition_type_cnf"] == 1
    assert ifc["trigger_point"]["spt"] == [
        {"condition_negated": 0, "group": 0, "method": "INVITE"},
        {"condition_negated": 0, "group": 1, "session_case": 1},
        {"condition_negated": 1, "group": 1, "sip_header": {"header": "Accept-Contact", "content": ".*mmtel.*"}},
        {"condition_negated": 0, "group": 2, "sdp_line": {"line": "m", "content": "audio"}},
        {"condition_negated": 0, "group": 2, "request_uri": "sip:conf.*"},
    ]
    # Every number a BSON int32 (0x10), never an int64 (0x12): open5gs skips the others.
    encoded = bson.encode({"ifc": doc["ifc"]})
    for name in ("priority", "default_handling", "condition_type_cnf", "condition_negated", "group", "session_case"):
        assert f"\x10{name}\x00".encode() in encoded and f"\x12{name}\x00".encode() not in encoded, name


def test_a_subscriber_without_ifcs_gets_an_empty_array_so_removed_ifcs_are_cleared():
    (doc,) = document(subscriber())
    assert doc["ifc"] == []


def test_the_double_serves_the_ifc_open5gs_reads_as_29_228_xml_the_s_cscf_parses():
    (doc,) = document(subscriber(ifcs=[MMTEL]))
    raw = bson.decode(bson.encode(doc))
    xml = ifc_xml(read_ifcs(raw["ifc"]))
    root = ET.fromstring(f"<ServiceProfile>{xml}</ServiceProfile>")
    (ifc,) = root.findall("InitialFilterCriteria")
    assert ifc.findtext("Priority") == "1"
    assert ifc.findtext("TriggerPoint/ConditionTypeCNF") == "1"
    spts = ifc.findall("TriggerPoint/SPT")
    assert [s.findtext("Group") for s in spts] == ["0", "1", "1", "2", "2"]
    assert spts[0].findtext("Method") == "INVITE" and spts[1].findtext("SessionCase") == "1"
    assert spts[2].findtext("ConditionNegated") == "1" and spts[2].findtext("SIPHeader/Header") == "Accept-Contact"
    assert spts[3].findtext("SessionDescription/Line") == "m" and spts[4].findtext("RequestURI") == "sip:conf.*"
    assert ifc.findtext("ApplicationServer/ServerName") == "sip:mmtel.ims.example.net;transport=tcp"
    assert ifc.findtext("ApplicationServer/DefaultHandling") == "1"
    # The double's own check: a ServiceProfile fragment of InitialFilterCriteria only.
    Subscriber(impi="x@y", k=K, opc=OPC, impus=["sip:x@y"], ifc_xml=xml)


def test_the_double_reads_numbers_only_as_int32_and_spt_counts_as_open5gs_does():
    # An int64 priority is not read (open5gs: BSON_ITER_HOLDS_INT32), so it stays 0.
    (ifc,) = read_ifcs([{"priority": bson.int64.Int64(7), "trigger_point": {"spt": [{"method": "INVITE"}]}}])
    assert ifc["priority"] == 0 and ifc["num_of_spt"] == 1
    # Two iFCs: the second's SPT count lands on the first, the second keeps none.
    two = read_ifcs(
        [
            {"trigger_point": {"spt": [{"method": "INVITE"}, {"session_case": 0}]}},
            {"trigger_point": {"spt": [{"method": "MESSAGE"}]}},
        ]
    )
    assert [i["num_of_spt"] for i in two] == [1, 0]

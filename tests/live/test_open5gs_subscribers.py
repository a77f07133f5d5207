"""Live: the subscribers declared in stack config, provisioned the way the Job does it, into a
real MongoDB-protocol server, and used by the core.

FerretDB (v1.24, SQLite backend; MongoDB itself is not packaged here) runs inside a test
network namespace. The provisioning Job's own script (config/open5gs/provision.py) runs on the
rendered `subscribers.json`, as the Job's container does; pymongo reads the documents back and
they are checked against the schema open5gs 2.7 reads, types included. The Cx HSS test double
then reads its subscribers from those same documents, as open5gs' HSS does (first digit run of
the IMPI, K/OPc/AMF/SQN from `security`), so a subscriber declared in stack config registers,
and once removed from the config and provisioned again, it is refused.

FerretDB here runs without authentication: the MongoDB user and password (the Kubernetes
Secret) are checked only as objects by the unit tier.
"""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path

import pytest
from bson.int64 import Int64
from pymongo import MongoClient

from components.render import open5gs as render_open5gs
from tests.doubles.milenage import Milenage
from tests.doubles.open5gs_db import Open5gsSubscriberSource
from tests.live import sipp
from tests.live.conftest import Daemon, _tcp_open, _wait
from tests.live.test_isc import AS_ADDRESS, AS_URI, call_through_the_application_server, header
from tests.netns import NetNamespace, can_create_namespaces
from tests.profiles import loopback_settings
from tests.tooling import missing, require_binary

FERRETDB_ADDRESS = "127.0.0.60"
FERRETDB_PORT = 27017
URI = f"mongodb://{FERRETDB_ADDRESS}:{FERRETDB_PORT}/{render_open5gs.MONGODB_DATABASE}"
OP = "ims-core-test-op"  # SIPp takes OP and derives OPc; the stack config holds OPc


def declared(imsi: str, msisdn: str, raw_k: str, **extra) -> dict:
    """A subscriber as a user writes it in stack config, for a SIPp UE with raw key `raw_k`."""
    k = raw_k.encode().hex()
    opc = Milenage(raw_k.encode(), op=OP.encode()).opc.hex()
    # SIPp's aka_AMF=00 is the two bytes "00": hex 3030.
    return {"imsi": imsi, "msisdn": msisdn, "k": k, "opc": opc, "amf": "3030", **extra}


ERIN = declared("001010000000101", "5550101", "erin-declared-k1")
FRANK = declared("001010000000102", "5550102", "frank-declared-k", apns=["ims"], ambr={"downlink": "20 Mbps"})


def stack(*subscribers: dict):
    return loopback_settings(stack="live", pcscfIpsec=False, pcscfRx=True, subscribers=list(subscribers))


def start_ferretdb(ns: NetNamespace, workdir: Path) -> Daemon:
    binary = require_binary("ferretdb", "go")
    data = workdir / f"ferretdb-{uuid.uuid4().hex[:6]}"
    data.mkdir(parents=True)
    daemon = Daemon(
        "ferretdb",
        [
            binary, "--handler=sqlite", f"--sqlite-url=file:{data}/", f"--state-dir={data}",
            f"--listen-addr={FERRETDB_ADDRESS}:{FERRETDB_PORT}", f"--debug-addr={FERRETDB_ADDRESS}:8088",
            "--telemetry=disable", "--log-level=warn",
        ],
        data / "ferretdb.log",
    ).start(ns)
    _wait(lambda: _tcp_open(ns, FERRETDB_ADDRESS, FERRETDB_PORT), 30, "FerretDB listening", daemon)
    return daemon


def provision(ns: NetNamespace, settings, workdir: Path) -> list[str]:
    """What the provisioning Job does: the shipped script on the rendered subscribers file."""
    path = workdir / f"subscribers-{uuid.uuid4().hex[:6]}.json"
    path.write_text(render_open5gs.subscribers_json(settings), encoding="utf-8")
    script = render_open5gs.SHIPPED / render_open5gs.PROVISION_SCRIPT
    run = ns.run(
        [sys.executable, str(script), str(path)],
        env={**os.environ, "MONGODB_URI": URI}, capture_output=True, text=True, timeout=120,
    )
    assert run.returncode == 0, f"provisioning failed ({run.returncode}):\n{run.stdout}\n{run.stderr}"
    return run.stdout.splitlines()


class Db:
    """pymongo inside the namespace: every socket it opens is opened there."""

    def __init__(self, ns: NetNamespace):
        self.ns = ns
        with ns.entered():
            self.client = MongoClient(URI, serverSelectionTimeoutMS=5000, directConnection=True)
            self.collection = self.client.get_default_database()["subscribers"]

    def docs(self) -> dict[str, dict]:
        with self.ns.entered():
            return {d["imsi"]: d for d in self.collection.find({})}

    def insert(self, doc: dict) -> None:
        with self.ns.entered():
            self.collection.insert_one(doc)

    def close(self) -> None:
        self.client.close()


@pytest.fixture(scope="module")
def dbns(workdir):
    reason = can_create_namespaces()
    if reason:
        missing(reason, "run the live tier as root (CI does)")
    ns = NetNamespace(f"o5db{os.getpid() % 100000}", hosts={}).create()
    daemon = None
    try:
        daemon = start_ferretdb(ns, workdir)
        yield ns
    finally:
        if daemon:
            daemon.stop()
        ns.destroy()


def _check_schema(doc: dict, sub: dict) -> None:
    assert doc["schema_version"] == 1 and type(doc["schema_version"]) is int
    assert doc["msisdn"] == [sub["msisdn"]]
    sec = doc["security"]
    assert (sec["k"], sec["opc"], sec["amf"]) == (sub["k"], sub["opc"], sub["amf"])
    assert type(sec["sqn"]) is Int64, type(sec["sqn"])  # open5gs reads any other type as 0
    for key in ("access_restriction_data", "subscriber_status", "network_access_mode", "subscribed_rau_tau_timer"):
        assert type(doc[key]) is int, key  # int32: pymongo decodes int64 as Int64
    sessions = {s["name"]: s for s in doc["slice"][0]["session"]}
    assert set(sessions) == set(sub.get("apns", ["internet", "ims"]))
    assert sessions["ims"]["qos"]["index"] == 5 and type(sessions["ims"]["qos"]["index"]) is int
    assert all(type(v) is int for v in sessions["ims"]["qos"]["arp"].values())
    assert all(type(doc["ambr"][d][f]) is int for d in ("uplink", "downlink") for f in ("value", "unit"))


def test_the_jobs_writes_follow_open5gs_schema_are_idempotent_and_keep_the_sqn(dbns, workdir):
    db = Db(dbns)
    try:
        assert provision(dbns, stack(ERIN, FRANK), workdir)[:2] == [f"added {ERIN['imsi']}", f"added {FRANK['imsi']}"]
        docs = db.docs()
        _check_schema(docs[ERIN["imsi"]], ERIN)
        _check_schema(docs[FRANK["imsi"]], FRANK)
        assert docs[FRANK["imsi"]]["ambr"]["downlink"] == {"value": 20, "unit": 2}
        # The HSS advances the SQN; provisioning again must not set it back.
        with dbns.entered():
            db.collection.update_one({"imsi": ERIN["imsi"]}, {"$set": {"security.sqn": Int64(4096)}})
        assert provision(dbns, stack(ERIN, FRANK), workdir)[0] == "no change"
        assert db.docs()[ERIN["imsi"]]["security"]["sqn"] == 4096
    finally:
        db.close()


def test_removing_a_subscriber_from_config_deletes_only_that_one_never_foreign_documents(dbns, workdir):
    db = Db(dbns)
    try:
        provision(dbns, stack(ERIN, FRANK), workdir)
        foreign = {"imsi": "001010000000999", "msisdn": ["5550999"], "security": {"k": "0" * 32}}  # e.g. the WebUI's
        db.insert(foreign)
        assert provision(dbns, stack(ERIN), workdir)[0] == f"removed {FRANK['imsi']}"
        assert set(db.docs()) == {ERIN["imsi"], foreign["imsi"]}
    finally:
        db.close()


def test_a_declared_subscriber_registers_and_is_refused_once_removed_from_config(core, workdir):
    ferretdb = start_ferretdb(core.ns, workdir)
    db = Db(core.ns)
    hss = core.hss
    ue = sipp.Ue(
        name="erin", impi=f"{ERIN['imsi']}@{core.settings.ims_domain}", k="erin-declared-k1", op=OP, amf="00",
        address="127.0.0.110",
    )
    hss.subscriber_source = Open5gsSubscriberSource(db.collection, core.settings.ims_domain)
    try:
        provision(core.ns, stack(ERIN), workdir)
        run = core.sipp(ue, sipp.register(ue, core.settings.ims_domain), "register-erin-declared")
        assert run.returncode == 0, run.explain()
        (ok,) = run.received("SIP/2.0 200")
        assert f"sip:{ERIN['msisdn']}@{core.settings.ims_domain}" in ok and f"tel:{ERIN['msisdn']}" in ok, ok
        assert [r.command for r in hss.requests if r.user_name == ue.impi][:3] == ["UAR", "MAR", "SAR"]
        # De-register before the removal: nothing of erin stays behind for the tests after this one.
        run = core.sipp(ue, sipp.register(ue, core.settings.ims_domain, expires=0), "deregister-erin-declared")
        assert run.returncode == 0, run.explain()

        provision(core.ns, stack(), workdir)  # erin no longer declared
        refused = core.sipp(ue, sipp.register_refused(ue, core.settings.ims_domain, "403"), "register-erin-removed")
        assert refused.returncode == 0, refused.explain()
        last_uar = [r for r in hss.requests_of("UAR") if r.user_name == ue.impi][-1]
        assert last_uar.experimental_result_code == 5001  # DIAMETER_ERROR_USER_UNKNOWN
    finally:
        hss.subscriber_source = None
        db.close()
        ferretdb.stop()
    assert not hss.take_errors()


# An iFC as a user declares it in stack config: dave's ISC test's criteria (tests/live/test_isc.py).
ORIGINATING_INVITE = {
    "priority": 0,
    "applicationServer": AS_URI,
    "defaultHandling": "continue",
    "triggers": [{"method": "INVITE"}, {"sessionCase": "originating"}],
}
GRACE = declared("001010000000103", "5550103", "grace-declared-k", ifcs=[ORIGINATING_INVITE])
HEIDI = declared("001010000000104", "5550104", "heidi-declared-k")


def test_a_declared_ifc_is_written_in_open5gs_schema_and_cleared_when_removed(dbns, workdir):
    db = Db(dbns)
    try:
        provision(dbns, stack(GRACE, HEIDI), workdir)
        docs = db.docs()
        (ifc,) = docs[GRACE["imsi"]]["ifc"]
        assert ifc == {
            "priority": 0,
            "application_server": {"server_name": AS_URI, "default_handling": 0},
            "trigger_point": {
                "condition_type_cnf": 0,
                "spt": [
                    {"condition_negated": 0, "group": 0, "method": "INVITE"},
                    {"condition_negated": 0, "group": 0, "session_case": 0},
                ],
            },
        }
        # open5gs reads these numbers only as int32 (BSON_ITER_HOLDS_INT32); pymongo decodes
        # int32 as int and int64 as Int64, and == above does not tell them apart.
        numbers = [ifc["priority"], ifc["application_server"]["default_handling"]]
        numbers += [ifc["trigger_point"]["condition_type_cnf"], ifc["trigger_point"]["spt"][1]["session_case"]]
        numbers += [spt[k] for spt in ifc["trigger_point"]["spt"] for k in ("condition_negated", "group")]
        assert all(type(n) is int for n in numbers), [type(n) for n in numbers]
        assert docs[HEIDI["imsi"]]["ifc"] == []
        without = {k: v for k, v in GRACE.items() if k != "ifcs"}
        assert provision(dbns, stack(without, HEIDI), workdir)[0] == f"updated {GRACE['imsi']}"
        assert db.docs()[GRACE["imsi"]]["ifc"] == []
    finally:
        db.close()


def test_a_declared_ifc_sends_the_invite_to_the_application_server(core, workdir):
    """GRACE's iFC, declared in stack config, provisioned by the Job's script, read back by the
    HSS double from FerretDB as open5gs' HSS reads it, reaches the S-CSCF in the SAA; her
    INVITE to HEIDI (declared without iFC) goes through the application server."""
    ferretdb = start_ferretdb(core.ns, workdir)
    db = Db(core.ns)
    hss = core.hss
    domain = core.settings.ims_domain

    def ue(sub: dict, name: str, raw_k: str, n: int) -> sipp.Ue:
        return sipp.Ue(name=name, impi=f"{sub['imsi']}@{domain}", k=raw_k, op=OP, amf="00", address=f"127.0.0.{n}")

    grace, heidi = ue(GRACE, "grace", "grace-declared-k", 111), ue(HEIDI, "heidi", "heidi-declared-k", 112)
    hss.subscriber_source = Open5gsSubscriberSource(db.collection, domain)
    try:
        provision(core.ns, stack(GRACE, HEIDI), workdir)
        for who in (grace, heidi):
            run = core.sipp(who, sipp.register(who, domain), f"register-{who.name}-declared")
            assert run.returncode == 0, run.explain()
        # The SAA of her registration carried the iFC in its User-Data (TS 29.228 annex B).
        sar = [r for r in hss.requests_of("SAR") if r.user_name == grace.impi][-1]
        user_data = sar.answer.str_of(606, 10415) or ""
        assert f"<ServerName>{AS_URI}</ServerName>" in user_data and "<Method>INVITE</Method>" in user_data, user_data

        app_server, callee = call_through_the_application_server(core, grace, heidi, "declared")
        (at_as,) = app_server.received("INVITE ")
        assert at_as.startswith(f"INVITE sip:{heidi.impi} SIP/2.0"), at_as
        (at_heidi,) = callee.received("INVITE ")
        assert any(AS_ADDRESS in via for via in header(at_heidi, "Via")), at_heidi

        for who in (grace, heidi):  # nothing of theirs stays registered for the tests after this one
            run = core.sipp(who, sipp.register(who, domain, expires=0), f"deregister-{who.name}-declared")
            assert run.returncode == 0, run.explain()
    finally:
        hss.subscriber_source = None
        db.close()
        ferretdb.stop()
    assert not hss.take_errors()

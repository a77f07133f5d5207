"""Provision the declared subscribers into open5gs' MongoDB (run by the provisioning Job).

usage: provision.py SUBSCRIBERS_JSON      (MONGODB_URI in the environment, with the database)

Idempotent: each declared subscriber is upserted by IMSI into the `subscribers` collection in
the schema open5gs 2.7 reads (numbers as BSON int32, `security.sqn` as int64, `msisdn` a list,
an `ims` session with QCI 5, the iFCs in `ifc`). The SQN is written only when the document is
created: the HSS advances it with every authentication vector, and overwriting it would make
UEs resynchronise.
Subscribers this stack provisioned earlier and no longer declares are removed; documents
written by anyone else (the open5gs WebUI, another stack) are never touched: the stack that
manages a document is recorded in `ims_core.stack`, a field open5gs does not read.
Prints one line per change; exits non-zero on any failure.
"""

from __future__ import annotations

import json
import os
import sys
import time

from bson.int64 import Int64
from pymongo import MongoClient
from pymongo.errors import PyMongoError

COLLECTION = "subscribers"
# open5gs' session types (OGS_PDU_SESSION_TYPE_*): 3 = IPv4v6.
SESSION_TYPE_IPV4V6 = 3
# QCI and ARP per APN: IMS signalling is QCI 5 (TS 23.203 table 6.1.7).
QOS = {
    "ims": {"index": 5, "arp": {"priority_level": 1, "pre_emption_capability": 1, "pre_emption_vulnerability": 1}},
    "internet": {"index": 9, "arp": {"priority_level": 8, "pre_emption_capability": 1, "pre_emption_vulnerability": 1}},
}
# Network access mode 0 (packet and circuit), subscriber status 0 (service granted),
# access restriction 32 (HO to non-3GPP not allowed), as the open5gs WebUI writes them.
FIXED = {
    "schema_version": 1,
    "access_restriction_data": 32,
    "subscriber_status": 0,
    "operator_determined_barring": 0,
    "network_access_mode": 0,
    "subscribed_rau_tau_timer": 12,
}
INITIAL_SQN = 32  # SEQ 1, IND 0 (TS 33.102 annex C.3.2), what open5gs' WebUI starts at
CONNECT_TIMEOUT_S = 300


def _ambr(rates: dict) -> dict:
    return {d: {"value": int(rates[d][0]), "unit": int(rates[d][1])} for d in ("downlink", "uplink")}


def _spt(trigger: dict) -> dict:
    """One trigger as open5gs 2.7 reads an `spt` entry (lib/dbi/ims.c ogs_dbi_ims_data)."""
    spt = {"condition_negated": int(trigger["negated"]), "group": int(trigger["group"])}
    if "method" in trigger:
        spt["method"] = trigger["method"]
    elif "sessionCase" in trigger:
        spt["session_case"] = int(trigger["sessionCase"])
    elif "header" in trigger:
        spt["sip_header"] = {"header": trigger["header"]["name"], "content": trigger["header"]["content"]}
    elif "sdpLine" in trigger:
        spt["sdp_line"] = {"line": trigger["sdpLine"]["line"], "content": trigger["sdpLine"]["content"]}
    else:
        spt["request_uri"] = trigger["requestUri"]
    return spt


def ifc_array(ifcs: list[dict]) -> list[dict]:
    """The subscriber's `ifc` array: the iFCs open5gs' HSS puts into the SAA's User-Data."""
    return [
        {
            "priority": int(ifc["priority"]),
            "application_server": {
                "server_name": ifc["applicationServer"],
                "default_handling": int(ifc["defaultHandling"]),
            },
            "trigger_point": {
                "condition_type_cnf": int(ifc["conditionTypeCnf"]),
                "spt": [_spt(t) for t in ifc["triggers"]],
            },
        }
        for ifc in ifcs
    ]


def document(sub: dict, stack: str) -> dict:
    """The subscriber document open5gs 2.7 reads, without `security.sqn` (see module doc)."""
    ambr = _ambr(sub["ambr"])
    sessions = [
        {"name": apn, "type": SESSION_TYPE_IPV4V6, "qos": QOS[apn], "ambr": ambr, "pcc_rule": []}
        for apn in sorted(sub["apns"], key=lambda a: a != "ims")
    ]
    return {
        **FIXED,
        "imsi": sub["imsi"],
        "msisdn": [sub["msisdn"]],
        "imeisv": [],
        "mme_host": [],
        "mme_realm": [],
        "purge_flag": [],
        "security": {"k": sub["k"], "opc": sub["opc"], "op": None, "amf": sub["amf"]},
        "ambr": ambr,
        "slice": [{"sst": 1, "default_indicator": True, "session": sessions}],
        # Always written, empty too: iFCs removed from the stack config leave the document.
        "ifc": ifc_array(sub.get("ifcs", [])),
        "ims_core": {"stack": stack},
    }


def provision(db, declared: dict) -> list[str]:
    """Upsert the declared subscribers, remove this stack's undeclared ones; the changes made."""
    stack = declared["stack"]
    col = db[COLLECTION]
    changes = []
    imsis = []
    for sub in declared["subscribers"]:
        imsis.append(sub["imsi"])
        doc = document(sub, stack)
        # security field by field: a $set of the whole subdocument would conflict with the
        # $setOnInsert of security.sqn (and, on an update, drop the SQN the HSS advanced).
        set_fields = {k: v for k, v in doc.items() if k != "security"}
        set_fields.update({f"security.{k}": v for k, v in doc["security"].items()})
        result = col.update_one(
            {"imsi": sub["imsi"]},
            {"$set": set_fields, "$setOnInsert": {"security.sqn": Int64(INITIAL_SQN)}},
            upsert=True,
        )
        if result.upserted_id is not None:
            changes.append(f"added {sub['imsi']}")
        elif result.modified_count:
            changes.append(f"updated {sub['imsi']}")
    gone = col.find({"ims_core.stack": stack, "imsi": {"$nin": imsis}}, {"imsi": 1})
    for doc in list(gone):
        col.delete_one({"_id": doc["_id"]})
        changes.append(f"removed {doc['imsi']}")
    return changes


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.splitlines()[2], file=sys.stderr)
        return 2
    with open(argv[1], encoding="utf-8") as fh:
        declared = json.load(fh)
    client = MongoClient(os.environ["MONGODB_URI"], serverSelectionTimeoutMS=5000)
    deadline = time.monotonic() + CONNECT_TIMEOUT_S
    while True:  # the database may still be starting: wait, as a Job should
        try:
            client.admin.command("ping")
            break
        except PyMongoError as exc:
            if time.monotonic() > deadline:
                print(f"MongoDB not reachable after {CONNECT_TIMEOUT_S} s: {exc}", file=sys.stderr)
                return 1
            print("waiting for MongoDB ...", file=sys.stderr)
            time.sleep(2)
    changes = provision(client.get_default_database(), declared)
    for line in changes or ["no change"]:
        print(line)
    print(f"{len(declared['subscribers'])} subscriber(s) declared by stack {declared['stack']}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

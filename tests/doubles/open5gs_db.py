"""``Open5gsSubscriberSource``: the Cx HSS double's subscribers read from open5gs' documents.

Test double support: looks an IMPI up the way open5gs 2.7's HSS does (hss/hss-context.c,
dbi.c), in the same MongoDB collection the provisioning Job writes, so the live tier registers
the subscribers declared in stack config:
- the subscriber is found by the first run of digits in the IMPI, matched against `imsi` or
  an entry of `msisdn`;
- K, OPc and AMF are hex strings in `security`; `security.sqn` counts only as a BSON int64
  (any other type is read as 0, as open5gs' bson_iter_int64 does);
- the IMPUs are `sip:<msisdn>@<domain>` and `tel:<msisdn>` (plus the IMSI-derived
  `sip:<imsi>@<domain>` a UE without an ISIM registers with, TS 23.003 13.4B);
- the iFCs come from the `ifc` array as lib/dbi/ims.c (ogs_dbi_ims_data) reads it: a number
  counts only as a BSON int32, a string only as UTF-8, anything else is skipped; one trigger
  kind per SPT (the last key read wins); and the SPT count of every iFC lands on the first
  one (`ims_data->ifc->trigger_point.num_of_spt`), which is why the settings allow one iFC.
  They go into the User-Data with the element names of open5gs' Cx library
  (lib/diameter/cx/message.c, ogs_diam_cx_xml_*), the TS 29.228 CxDataType names.
A document that lacks what open5gs needs (no msisdn, K or OPc of the wrong length) raises:
the double then answers DIAMETER_UNABLE_TO_COMPLY and records the error, so the test fails.
"""

from __future__ import annotations

import re
from xml.sax.saxutils import escape

from bson.int64 import Int64

from .cx_hss import Subscriber


class Open5gsSubscriberSource:
    def __init__(self, collection, ims_domain: str):
        self.collection = collection
        self.ims_domain = ims_domain

    def __call__(self, impi: str) -> Subscriber | None:
        digits = re.search(r"[0-9]+", impi)
        if digits is None:
            return None
        doc = self.collection.find_one({"$or": [{"imsi": digits.group(0)}, {"msisdn": digits.group(0)}]})
        if doc is None:
            return None
        security = doc["security"]
        if not doc.get("msisdn"):
            raise ValueError(f"subscriber {doc['imsi']} has no msisdn: open5gs builds no IMPU for it")
        msisdn = doc["msisdn"][0]
        sqn = security.get("sqn")
        return Subscriber(
            impi=impi,
            k=security["k"],
            opc=security["opc"],
            amf=security["amf"],
            sqn=int(sqn) if isinstance(sqn, Int64) else 0,
            impus=[f"sip:{msisdn}@{self.ims_domain}", f"tel:{msisdn}", f"sip:{doc['imsi']}@{self.ims_domain}"],
            ifc_xml=ifc_xml(read_ifcs(doc.get("ifc"))),
        )


def _int32(value) -> int | None:
    return value if type(value) is int and -(2**31) <= value < 2**31 else None  # Int64 is another type


def _str(value) -> str | None:
    return value if isinstance(value, str) else None


def _spt(raw: dict) -> dict:
    spt = {"condition_negated": 0, "group": 0, "kind": None}
    for key, value in raw.items():
        if key in ("condition_negated", "group") and _int32(value) is not None:
            spt[key] = value
        elif key in ("method", "request_uri") and _str(value) is not None:
            spt["kind"], spt["value"] = key, value
        elif key == "session_case" and _int32(value) is not None:
            spt["kind"], spt["value"] = key, value
        elif key in ("sip_header", "sdp_line") and isinstance(value, dict):
            first = "header" if key == "sip_header" else "line"
            spt["kind"], spt["value"] = key, (_str(value.get(first)) or "", _str(value.get("content")) or "")
    return spt


def read_ifcs(raw) -> list[dict]:
    """The `ifc` array as ogs_dbi_ims_data fills ogs_ims_data_t.ifc[]."""
    if not isinstance(raw, list):
        return []
    ifcs: list[dict] = []
    for item in raw:
        ifc = {"priority": 0, "server_name": None, "default_handling": 0, "cnf": 0, "spt": [], "num_of_spt": 0}
        ifcs.append(ifc)
        if not isinstance(item, dict):
            continue
        if _int32(item.get("priority")) is not None:
            ifc["priority"] = item["priority"]
        server = item.get("application_server")
        if isinstance(server, dict):
            ifc["server_name"] = _str(server.get("server_name"))
            if _int32(server.get("default_handling")) is not None:
                ifc["default_handling"] = server["default_handling"]
        point = item.get("trigger_point")
        if isinstance(point, dict):
            if _int32(point.get("condition_type_cnf")) is not None:
                ifc["cnf"] = point["condition_type_cnf"]
            if isinstance(point.get("spt"), list):
                ifc["spt"] = [_spt(raw) if isinstance(raw, dict) else _spt({}) for raw in point["spt"]]
                ifcs[0]["num_of_spt"] = len(ifc["spt"])  # open5gs: ims_data->ifc->trigger_point.num_of_spt
    return ifcs


def _spt_xml(spt: dict) -> str:
    kind, value = spt["kind"], spt.get("value")
    if kind == "method":
        inner = f"<Method>{escape(value)}</Method>"
    elif kind == "session_case":
        inner = f"<SessionCase>{value}</SessionCase>"
    elif kind == "request_uri":
        inner = f"<RequestURI>{escape(value)}</RequestURI>"
    elif kind == "sip_header":
        inner = f"<SIPHeader><Header>{escape(value[0])}</Header><Content>{escape(value[1])}</Content></SIPHeader>"
    elif kind == "sdp_line":
        inner = f"<SessionDescription><Line>{escape(value[0])}</Line><Content>{escape(value[1])}</Content></SessionDescription>"
    else:
        inner = ""
    return (
        f"<SPT><ConditionNegated>{spt['condition_negated']}</ConditionNegated>"
        f"<Group>{spt['group']}</Group>{inner}</SPT>"
    )


def ifc_xml(ifcs: list[dict]) -> str:
    """InitialFilterCriteria elements of the ServiceProfile, as open5gs' HSS writes them."""
    out = []
    for ifc in ifcs:
        spts = "".join(_spt_xml(spt) for spt in ifc["spt"][: ifc["num_of_spt"]])
        out.append(
            f"<InitialFilterCriteria><Priority>{ifc['priority']}</Priority>"
            f"<TriggerPoint><ConditionTypeCNF>{ifc['cnf']}</ConditionTypeCNF>{spts}</TriggerPoint>"
            f"<ApplicationServer><ServerName>{escape(ifc['server_name'] or '')}</ServerName>"
            f"<DefaultHandling>{ifc['default_handling']}</DefaultHandling></ApplicationServer>"
            "</InitialFilterCriteria>"
        )
    return "".join(out)

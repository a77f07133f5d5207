"""``Open5gsSubscriberSource``: the Cx HSS double's subscribers read from open5gs' documents.

Test double support: looks an IMPI up the way open5gs 2.7's HSS does (hss/hss-context.c,
dbi.c), in the same MongoDB collection the provisioning Job writes, so the live tier registers
the subscribers declared in stack config:
- the subscriber is found by the first run of digits in the IMPI, matched against `imsi` or
  an entry of `msisdn`;
- K, OPc and AMF are hex strings in `security`; `security.sqn` counts only as a BSON int64
  (any other type is read as 0, as open5gs' bson_iter_int64 does);
- the IMPUs are `sip:<msisdn>@<domain>` and `tel:<msisdn>` (plus the IMSI-derived
  `sip:<imsi>@<domain>` a UE without an ISIM registers with, TS 23.003 13.4B).
A document that lacks what open5gs needs (no msisdn, K or OPc of the wrong length) raises:
the double then answers DIAMETER_UNABLE_TO_COMPLY and records the error, so the test fails.
"""

from __future__ import annotations

import re

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
        )

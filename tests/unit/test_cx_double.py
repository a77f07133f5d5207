"""The Cx HSS test double: MILENAGE against TS 35.208, the Diameter codec, and the
double's answers over a real socket checked against TS 29.229."""

from __future__ import annotations

import base64
import socket
import xml.etree.ElementTree as ET

import pytest

from tests.doubles import diameter as d
from tests.doubles import milenage as mil
from tests.doubles.cx_hss import (
    AVP_CONFIDENTIALITY_KEY,
    AVP_INTEGRITY_KEY,
    AVP_OPTIONAL_CAPABILITY,
    AVP_PUBLIC_IDENTITY,
    AVP_SERVER_ASSIGNMENT_TYPE,
    AVP_SERVER_CAPABILITIES,
    AVP_SERVER_NAME,
    AVP_SIP_AUTH_DATA_ITEM,
    AVP_SIP_AUTHENTICATE,
    AVP_SIP_AUTHENTICATION_SCHEME,
    AVP_SIP_AUTHORIZATION,
    AVP_SIP_ITEM_NUMBER,
    AVP_SIP_NUMBER_AUTH_ITEMS,
    AVP_USER_AUTHORIZATION_TYPE,
    AVP_USER_DATA,
    AVP_USER_DATA_ALREADY_AVAILABLE,
    AVP_VISITED_NETWORK_IDENTIFIER,
    CX_APPLICATION_ID,
    VENDOR_3GPP,
    CxHssTestDouble,
    RegState,
)

H = bytes.fromhex

# --- MILENAGE: TS 35.208 test sets 1 and 2 (values cross-checked with TS 35.207/35.208
# copies in several public implementations) -----------------------------------------
TEST_SETS = [
    dict(
        k="465b5ce8b199b49faa5f0a2ee238a6bc",
        rand="23553cbe9637a89d218ae64dae47bf35",
        sqn="ff9bb4d0b607",
        amf="b9b9",
        op="cdc202d5123e20f62b6d676ac72cb318",
        opc="cd63cb71954a9f4e48a5994e37a02baf",
        f1="4a9ffac354dfafb3",
        f1star="01cfaf9ec4e871e9",
        f2="a54211d5e3ba50bf",
        f3="b40ba9a3c58b2a05bbf0d987b21bf8cb",
        f4="f769bcd751044604127672711c6d3441",
        f5="aa689c648370",
        f5star="451e8beca43b",
    ),
    dict(
        k="0396eb317b6d1c36f19c1c84cd6ffd16",
        rand="c00d603103dcee52c4478119494202e8",
        sqn="fd8eef40df7d",
        amf="af17",
        op="ff53bade17df5d4e793073ce9d7579fa",
        opc="53c15671c60a4b731c55b4a441c0bde2",
        f1="5df5b31807e258b0",
        f1star="a8c016e51ef4a343",
        f2="d3a628ed988620f0",
        f3="58c433ff7a7082acd424220f2b67c556",
        f4="21a8c1f929702adb3e738488b9f5c5da",
        f5="c47783995f72",
        f5star=None,
    ),
]


@pytest.mark.parametrize("ts", TEST_SETS, ids=["set1", "set2"])
def test_milenage_ts_35_208(ts):
    assert mil.opc_from_op(H(ts["k"]), H(ts["op"])).hex() == ts["opc"]
    m = mil.Milenage(H(ts["k"]), op=H(ts["op"]))
    rand, sqn, amf = H(ts["rand"]), H(ts["sqn"]), H(ts["amf"])
    assert m.f1(rand, sqn, amf).hex() == ts["f1"]
    assert m.f1star(rand, sqn, amf).hex() == ts["f1star"]
    res, ck, ik, ak = m.f2345(rand)
    assert (res.hex(), ck.hex(), ik.hex(), ak.hex()) == (ts["f2"], ts["f3"], ts["f4"], ts["f5"])
    if ts["f5star"]:
        assert m.f5star(rand).hex() == ts["f5star"]
    # the same from OPc
    assert mil.Milenage(ts["k"], opc=ts["opc"]).f2345(rand)[0].hex() == ts["f2"]


def test_vector_autn_and_kamailio_encodings():
    ts = TEST_SETS[0]
    m = mil.Milenage(H(ts["k"]), opc=H(ts["opc"]))
    vec = mil.generate_vector(m, int(ts["sqn"], 16), H(ts["amf"]), H(ts["rand"]))
    # AUTN = SQN xor AK || AMF || MAC-A
    assert vec.autn.hex() == "55f328b43577" + "b9b9" + ts["f1"]
    assert vec.sip_authenticate == H(ts["rand"]) + vec.autn  # binary, 32 bytes
    assert vec.sip_authorization == H(ts["f2"])  # binary XRES
    assert base64.b64decode(vec.nonce) == vec.sip_authenticate
    # the UE side accepts it and recovers SQN
    assert mil.ue_authenticate(m, vec.rand, vec.autn) == (vec.xres, int(ts["sqn"], 16))
    tampered = vec.autn[:-1] + bytes([vec.autn[-1] ^ 1])
    with pytest.raises(mil.AutnError):
        mil.ue_authenticate(m, vec.rand, tampered)


def test_auts_round_trip():
    m = mil.Milenage(b"0123456789abcdef", op=b"fedcba9876543210")
    rand = bytes(range(16))
    auts = mil.make_auts(m, rand, 0x123456789A)
    assert len(auts) == 14
    assert mil.verify_auts(m, rand, auts) == 0x123456789A
    assert mil.verify_auts(m, rand, auts[:-1] + b"\x00") is None


def test_keys_raw_bytes_or_hex_never_guessed():
    assert mil.key_bytes(b"0123456789abcdef") == b"0123456789abcdef"
    assert mil.key_bytes("00" * 16) == bytes(16)
    with pytest.raises(ValueError, match="raw bytes"):
        mil.key_bytes("0123456789abcdef")  # a SIPp-style key must be given as bytes
    with pytest.raises(ValueError):
        mil.key_bytes(b"short")


# --- codec ----------------------------------------------------------------------------


def test_avp_wire_format_and_padding():
    # base AVP, M bit, length excludes padding
    assert d.Avp.utf8(d.AVP_ORIGIN_HOST, "abc").encode() == H("000001084000000b61626300")
    # vendor AVP: V and M bits, Vendor-ID after the header
    assert d.Avp.utf8(AVP_PUBLIC_IDENTITY, "x", VENDOR_3GPP).encode() == H("00000259c000000d000028af78000000")
    assert d.Avp.u32(d.AVP_RESULT_CODE, 2001).encode() == H("0000010c4000000c000007d1")


def test_message_round_trip_with_grouped_and_vendor_avps():
    item = d.Avp.grouped(
        AVP_SIP_AUTH_DATA_ITEM,
        [
            d.Avp.utf8(AVP_SIP_AUTHENTICATION_SCHEME, "Digest-AKAv1-MD5", VENDOR_3GPP),
            d.Avp.octets(AVP_SIP_AUTHENTICATE, bytes(range(32)), VENDOR_3GPP),
            d.Avp.octets(AVP_SIP_AUTHORIZATION, b"\x01\x02\x03\x04\x05", VENDOR_3GPP),
        ],
        VENDOR_3GPP,
    )
    msg = d.Message(303, CX_APPLICATION_ID, request=True, proxiable=True, hop_by_hop=7, end_to_end=9)
    msg.add(
        d.Avp.utf8(d.AVP_SESSION_ID, "s;1;2"),
        d.Avp.address(d.AVP_HOST_IP_ADDRESS, "127.0.0.20"),
        d.Avp.u64(d.AVP_ORIGIN_STATE_ID, 1 << 40, mandatory=False),
        item,
    )
    raw = msg.encode()
    assert len(raw) % 4 == 0 and int.from_bytes(raw[1:4], "big") == len(raw)
    assert raw[4] == d.FLAG_REQUEST | d.FLAG_PROXIABLE
    back = d.Message.decode(raw)
    assert back == msg
    assert back.find(d.AVP_HOST_IP_ADDRESS).as_address() == "127.0.0.20"
    inner = back.find(AVP_SIP_AUTH_DATA_ITEM, VENDOR_3GPP)
    assert inner.find(AVP_SIP_AUTHORIZATION, VENDOR_3GPP).data == b"\x01\x02\x03\x04\x05"
    assert inner.find(AVP_SIP_AUTHORIZATION) is None  # vendor id is part of the key
    answer = msg.answer()
    assert (answer.request, answer.proxiable, answer.hop_by_hop, answer.end_to_end) == (False, True, 7, 9)


def test_decode_rejects_bad_avp_length():
    good = d.Avp.utf8(d.AVP_ORIGIN_HOST, "abc").encode()
    bad = good[:5] + (200).to_bytes(3, "big") + good[8:]
    with pytest.raises(d.DiameterDecodeError):
        d.decode_avps(bad)


# --- the double over a socket ---------------------------------------------------------

REALM = "ims.mnc001.mcc001.3gppnetwork.org"
ALICE = "001010000000001@" + REALM
ALICE_IMPUS = ["sip:001010000000001@" + REALM, "tel:+15550001"]
BOB = "001010000000002@" + REALM
BOB_IMPU = "sip:001010000000002@" + REALM
SCSCF = "sip:scscf.ims.mnc001.mcc001.3gppnetwork.org:6060"
IFC = (
    "<InitialFilterCriteria><Priority>0</Priority><TriggerPoint><ConditionTypeCNF>0</ConditionTypeCNF>"
    "<SPT><ConditionNegated>0</ConditionNegated><Group>0</Group><Method>INVITE</Method></SPT>"
    "</TriggerPoint><ApplicationServer><ServerName>sip:as.ims.example:5060</ServerName>"
    "<DefaultHandling>0</DefaultHandling></ApplicationServer></InitialFilterCriteria>"
)
K, OP = b"0123456789abcdef", b"fedcba9876543210"  # SIPp-style raw keys
CLIENT = d.LocalPeer(
    "scscf.ims.mnc001.mcc001.3gppnetwork.org",
    REALM,
    auth_application_ids=((VENDOR_3GPP, CX_APPLICATION_ID),),
    supported_vendor_ids=(VENDOR_3GPP,),
)


@pytest.fixture
def hss():
    double = CxHssTestDouble(
        {
            ALICE: dict(k=K, op=OP, amf=b"\x80\x00", sqn=0x20, impus=ALICE_IMPUS, ifc_xml=IFC),
            BOB: dict(k=K, opc="00" * 16, impus=[BOB_IMPU], unregistered_services=True),
        },
        bind_address="127.0.0.1",
        port=0,
        scscf_names=[SCSCF],
        optional_capabilities=[1],
    )
    double.start()
    yield double
    double.stop()
    assert double.errors == []


@pytest.fixture
def conn(hss):
    c = d.DiameterConnection(*hss.address)
    cea = c.request(d.build_cer(CLIENT, c.local_ip))
    assert cea.result_code == d.DIAMETER_SUCCESS
    yield c
    c.close()


def cx(code: int, *avps: d.Avp) -> d.Message:
    """A Cx request shaped like Kamailio's (cxdx_send_uar/mar/sar, ims_icscf/ims_auth)."""
    msg = d.Message(code, CX_APPLICATION_ID, request=True, proxiable=True)
    msg.add(
        d.Avp.utf8(d.AVP_SESSION_ID, d.new_session_id(CLIENT.origin_host)),
        *CLIENT.origin_avps(),
        d.Avp.utf8(d.AVP_DESTINATION_REALM, "epc.mnc001.mcc001.3gppnetwork.org"),
        d.Avp.grouped(
            d.AVP_VENDOR_SPECIFIC_APPLICATION_ID,
            [d.Avp.u32(d.AVP_VENDOR_ID, VENDOR_3GPP), d.Avp.u32(d.AVP_AUTH_APPLICATION_ID, CX_APPLICATION_ID)],
        ),
        d.Avp.u32(d.AVP_AUTH_SESSION_STATE, 1),
        *avps,
    )
    return msg


def v3(code, value):
    if isinstance(value, int):
        return d.Avp.u32(code, value, VENDOR_3GPP)
    if isinstance(value, str):
        return d.Avp.utf8(code, value, VENDOR_3GPP)
    return d.Avp.octets(code, value, VENDOR_3GPP)


def uar(impi, impu, uat=None):
    extra = [v3(AVP_USER_AUTHORIZATION_TYPE, uat)] if uat is not None else []
    return cx(
        300,
        d.Avp.utf8(d.AVP_USER_NAME, impi),
        v3(AVP_PUBLIC_IDENTITY, impu),
        v3(AVP_VISITED_NETWORK_IDENTIFIER, REALM),
        *extra,
    )


def mar(impi, impu, n=1, authorization=None, scheme="Digest-AKAv1-MD5"):
    item = [v3(AVP_SIP_AUTHENTICATION_SCHEME, scheme)]
    if authorization is not None:
        item.append(v3(AVP_SIP_AUTHORIZATION, authorization))
    return cx(
        303,
        v3(AVP_PUBLIC_IDENTITY, impu),
        d.Avp.utf8(d.AVP_USER_NAME, impi),
        v3(AVP_SIP_NUMBER_AUTH_ITEMS, n),
        d.Avp.grouped(AVP_SIP_AUTH_DATA_ITEM, item, VENDOR_3GPP),
        v3(AVP_SERVER_NAME, SCSCF),
    )


def sar(impi, impu, sat, server=SCSCF):
    return cx(
        301,
        v3(AVP_PUBLIC_IDENTITY, impu),
        v3(AVP_SERVER_NAME, server),
        d.Avp.utf8(d.AVP_USER_NAME, impi),
        v3(AVP_SERVER_ASSIGNMENT_TYPE, sat),
        v3(AVP_USER_DATA_ALREADY_AVAILABLE, 0),
    )


def lir(impu):
    return cx(302, v3(AVP_PUBLIC_IDENTITY, impu))


def assert_cx_answer(ans: d.Message, req: d.Message):
    """What TS 29.229 puts in every Cx answer."""
    assert not ans.request and ans.application_id == CX_APPLICATION_ID
    assert ans.command_code == req.command_code and ans.hop_by_hop == req.hop_by_hop
    assert ans.end_to_end == req.end_to_end
    assert ans.avps[0].code == d.AVP_SESSION_ID and ans.session_id == req.session_id
    vsai = ans.find(d.AVP_VENDOR_SPECIFIC_APPLICATION_ID)
    assert vsai.find(d.AVP_VENDOR_ID).as_u32() == VENDOR_3GPP
    assert vsai.find(d.AVP_AUTH_APPLICATION_ID).as_u32() == CX_APPLICATION_ID
    assert ans.u32_of(d.AVP_AUTH_SESSION_STATE) == 1
    assert ans.str_of(d.AVP_ORIGIN_HOST) == "hss.epc.mnc001.mcc001.3gppnetwork.org"
    assert ans.str_of(d.AVP_ORIGIN_REALM) == "epc.mnc001.mcc001.3gppnetwork.org"
    # every 3GPP AVP carries V + vendor 10415 and M
    for avp in ans.avps:
        if 600 <= avp.code < 700:
            assert avp.vendor_id == VENDOR_3GPP and avp.mandatory


def experimental(ans: d.Message) -> int:
    """Experimental-Result-Code; asserts the 3GPP vendor and no Result-Code beside it."""
    assert ans.result_code is None, "Result-Code and Experimental-Result are exclusive"
    vendor, code = ans.experimental_result
    assert vendor == VENDOR_3GPP
    return code


def result(ans: d.Message) -> int:
    assert ans.experimental_result is None
    return ans.result_code


def test_cer_cea(hss):
    with d.DiameterConnection(*hss.address) as c:
        cea = c.request(d.build_cer(CLIENT, c.local_ip))
        assert cea.command_code == 257 and not cea.request and cea.result_code == 2001
        assert cea.str_of(d.AVP_ORIGIN_HOST) == hss.origin_host
        assert cea.find(d.AVP_HOST_IP_ADDRESS).as_address() == "127.0.0.1"
        assert [a.as_u32() for a in cea.find_all(d.AVP_SUPPORTED_VENDOR_ID)] == [VENDOR_3GPP]
        vsai = cea.find(d.AVP_VENDOR_SPECIFIC_APPLICATION_ID)
        assert vsai.find(d.AVP_VENDOR_ID).as_u32() == VENDOR_3GPP
        assert vsai.find(d.AVP_AUTH_APPLICATION_ID).as_u32() == CX_APPLICATION_ID
        assert not cea.find(d.AVP_PRODUCT_NAME).mandatory
        assert hss.wait_for_peer(CLIENT.origin_host, timeout=2) == CLIENT.origin_host
        dwa = c.request(d.Message(d.CMD_DEVICE_WATCHDOG, 0, request=True).add(*CLIENT.origin_avps()))
        assert dwa.result_code == 2001
        dpr = d.Message(d.CMD_DISCONNECT_PEER, 0, request=True).add(
            *CLIENT.origin_avps(), d.Avp.u32(d.AVP_DISCONNECT_CAUSE, 0)
        )
        assert c.request(dpr).result_code == 2001


def test_cer_without_host_ip_address_is_refused_as_freediameter_does(hss):
    cer = d.build_cer(CLIENT, "127.0.0.1")
    cer.avps = [a for a in cer.avps if a.code != d.AVP_HOST_IP_ADDRESS]
    with d.DiameterConnection(*hss.address) as c:
        cea = c.request(cer)
        assert cea.result_code == d.DIAMETER_MISSING_AVP
        assert cea.find(d.AVP_FAILED_AVP).as_grouped()[0].code == d.AVP_HOST_IP_ADDRESS
        assert c.recv() is None  # closed, as after any refused CER
    assert hss.refused_cers == [CLIENT.origin_host]
    assert hss.peers == [] and hss.take_errors() == []  # the double behaved; nothing of its own failed
    with d.DiameterConnection(*hss.address) as c:  # the same peer, with the AVP, is admitted
        assert c.request(d.build_cer(CLIENT, c.local_ip)).result_code == 2001


def test_the_double_also_connects_to_its_peers_as_freediameter_connectpeer_does(hss):
    # A second double stands in for the CSCF's cdp: it accepts the HSS's CER (Cx in common).
    cscf = CxHssTestDouble(origin_host="icscf.example", origin_realm="example", port=0).start()
    try:
        hss.connect_peers([("icscf.example", *cscf.address)])
        assert cscf.wait_for_peer(hss.origin_host, timeout=5) == hss.origin_host
        assert hss.wait_for_peer("icscf.example", timeout=5) == "icscf.example"
        assert cscf.refused_cers == []  # the CER it sent carried Host-IP-Address
    finally:
        cscf.stop()


def test_cer_without_cx_is_refused_and_closed(hss):
    other = d.LocalPeer("pcrf.example", "example", auth_application_ids=((VENDOR_3GPP, 16777236),))
    with d.DiameterConnection(*hss.address) as c:
        cea = c.request(d.build_cer(other, c.local_ip))
        assert cea.result_code == d.DIAMETER_NO_COMMON_APPLICATION
        assert c.recv() is None  # the double closed the connection
    assert len(hss.take_errors()) == 1  # expected, and logged


def test_uar_first_registration_offers_capabilities(hss, conn):
    req = uar(ALICE, ALICE_IMPUS[0])
    ans = conn.request(req)
    assert_cx_answer(ans, req)
    assert experimental(ans) == 2001  # DIAMETER_FIRST_REGISTRATION
    assert ans.find(AVP_SERVER_NAME, VENDOR_3GPP) is None
    caps = ans.find(AVP_SERVER_CAPABILITIES, VENDOR_3GPP)
    assert [a.as_str() for a in d.find_all(caps.as_grouped(), AVP_SERVER_NAME, VENDOR_3GPP)] == [SCSCF]
    assert caps.find(AVP_OPTIONAL_CAPABILITY, VENDOR_3GPP).as_u32() == 1
    rec = hss.wait_for_request("UAR")
    assert (rec.user_name, rec.public_identities, rec.visited_network) == (ALICE, (ALICE_IMPUS[0],), REALM)
    assert rec.experimental_result_code == 2001 and rec.result_code is None


def test_unknown_user_and_identity_mismatch(conn):
    for req in (
        uar("nobody@" + REALM, "sip:nobody@" + REALM),
        lir("sip:nobody@" + REALM),
        mar("nobody@" + REALM, "sip:nobody@" + REALM),
        sar("nobody@" + REALM, "sip:nobody@" + REALM, 1),
    ):
        ans = conn.request(req)
        assert_cx_answer(ans, req)
        assert experimental(ans) == 5001  # DIAMETER_ERROR_USER_UNKNOWN
    # ims_auth reads User-Name and Public-Identity before the result: echoed in MAA errors
    ans = conn.request(mar("nobody@" + REALM, "sip:nobody@" + REALM))
    assert ans.str_of(d.AVP_USER_NAME) == "nobody@" + REALM
    assert ans.find(AVP_PUBLIC_IDENTITY, VENDOR_3GPP).as_str() == "sip:nobody@" + REALM
    assert experimental(conn.request(uar(ALICE, BOB_IMPU))) == 5002  # IDENTITIES_DONT_MATCH


def test_mar_returns_aka_vectors_kamailio_can_use(hss, conn):
    req = mar(ALICE, ALICE_IMPUS[0], n=2)
    ans = conn.request(req)
    assert_cx_answer(ans, req)
    assert result(ans) == 2001
    assert ans.str_of(d.AVP_USER_NAME) == ALICE
    assert ans.find(AVP_PUBLIC_IDENTITY, VENDOR_3GPP).as_str() == ALICE_IMPUS[0]
    assert ans.u32_of(AVP_SIP_NUMBER_AUTH_ITEMS, VENDOR_3GPP) == 2
    items = ans.find_all(AVP_SIP_AUTH_DATA_ITEM, VENDOR_3GPP)
    assert len(items) == 2
    ue = mil.Milenage(K, op=OP)  # what SIPp computes from the same raw keys
    sqns = []
    for number, item in enumerate(items, 1):
        assert item.vendor_id == VENDOR_3GPP and item.mandatory
        assert item.find(AVP_SIP_ITEM_NUMBER, VENDOR_3GPP).as_u32() == number
        assert item.find(AVP_SIP_AUTHENTICATION_SCHEME, VENDOR_3GPP).as_str() == "Digest-AKAv1-MD5"
        authenticate = item.find(AVP_SIP_AUTHENTICATE, VENDOR_3GPP).data
        assert len(authenticate) == 32
        rand, autn = authenticate[:16], authenticate[16:]
        res, sqn = mil.ue_authenticate(ue, rand, autn)
        sqns.append(sqn)
        assert item.find(AVP_SIP_AUTHORIZATION, VENDOR_3GPP).data == res  # binary XRES
        _, ck, ik, _ = ue.f2345(rand)
        assert item.find(AVP_CONFIDENTIALITY_KEY, VENDOR_3GPP).data == ck
        assert item.find(AVP_INTEGRITY_KEY, VENDOR_3GPP).data == ik
        assert autn[6:8] == b"\x80\x00"
    assert sqns == [0x20, 0x40]  # SQN advances per vector
    assert hss.sqn(ALICE) == 0x60
    assert hss.assigned_server_name(ALICE) == SCSCF  # a MAR stores the S-CSCF name
    assert [v.sqn for v in hss.issued_vectors(ALICE)] == sqns
    rec = hss.wait_for_request("MAR")
    assert (rec.auth_scheme, rec.auth_items_requested, rec.resync) == ("Digest-AKAv1-MD5", 2, False)


def test_mar_resync_with_auts(hss, conn):
    ue = mil.Milenage(K, op=OP)
    first = conn.request(mar(ALICE, ALICE_IMPUS[0]))
    rand = first.find(AVP_SIP_AUTH_DATA_ITEM, VENDOR_3GPP).find(AVP_SIP_AUTHENTICATE, VENDOR_3GPP).data[:16]
    auts = mil.make_auts(ue, rand, 0x5000)  # the USIM is ahead
    ans = conn.request(mar(ALICE, ALICE_IMPUS[0], authorization=rand + auts))
    assert result(ans) == 2001
    autn = ans.find(AVP_SIP_AUTH_DATA_ITEM, VENDOR_3GPP).find(AVP_SIP_AUTHENTICATE, VENDOR_3GPP).data[16:]
    rand2 = ans.find(AVP_SIP_AUTH_DATA_ITEM, VENDOR_3GPP).find(AVP_SIP_AUTHENTICATE, VENDOR_3GPP).data[:16]
    assert mil.ue_authenticate(ue, rand2, autn)[1] == 0x5000 + 32
    assert hss.requests_of("MAR")[-1].resync
    bad = conn.request(mar(ALICE, ALICE_IMPUS[0], authorization=rand + bytes(14)))
    assert result(bad) == d.DIAMETER_UNABLE_TO_COMPLY
    assert experimental(conn.request(mar(ALICE, ALICE_IMPUS[0], scheme="Digest-MD5"))) == 5006


def test_registration_cycle_sar_uar_lir(hss, conn):
    assert experimental(conn.request(lir(ALICE_IMPUS[0]))) == 5003  # not registered yet
    conn.request(mar(ALICE, ALICE_IMPUS[0]))
    # between MAR and SAR the I-CSCF sees the stored S-CSCF name
    ans = conn.request(uar(ALICE, ALICE_IMPUS[0]))
    assert experimental(ans) == 2001 and ans.find(AVP_SERVER_NAME, VENDOR_3GPP).as_str() == SCSCF

    req = sar(ALICE, ALICE_IMPUS[0], 1)  # REGISTRATION
    ans = conn.request(req)
    assert_cx_answer(ans, req)
    assert result(ans) == 2001
    assert ans.str_of(d.AVP_USER_NAME) == ALICE
    root = ET.fromstring(ans.find(AVP_USER_DATA, VENDOR_3GPP).data)
    assert root.tag == "IMSSubscription" and root.findtext("PrivateID") == ALICE
    profile = root.find("ServiceProfile")
    assert [p.findtext("Identity") for p in profile.findall("PublicIdentity")] == ALICE_IMPUS
    assert profile.find("InitialFilterCriteria/ApplicationServer/ServerName").text == "sip:as.ims.example:5060"
    assert hss.registration_state(ALICE_IMPUS[1]) == RegState.REGISTERED  # implicit set

    ans = conn.request(uar(ALICE, ALICE_IMPUS[0]))
    assert experimental(ans) == 2002  # DIAMETER_SUBSEQUENT_REGISTRATION
    assert ans.find(AVP_SERVER_NAME, VENDOR_3GPP).as_str() == SCSCF
    ans = conn.request(lir(ALICE_IMPUS[1]))
    assert result(ans) == 2001 and ans.find(AVP_SERVER_NAME, VENDOR_3GPP).as_str() == SCSCF
    assert result(conn.request(sar(ALICE, ALICE_IMPUS[0], 1, server="sip:other:6060"))) == 5012
    ans = conn.request(uar(ALICE, ALICE_IMPUS[0], uat=1))  # DE_REGISTRATION
    assert result(ans) == 2001 and ans.find(AVP_SERVER_NAME, VENDOR_3GPP).as_str() == SCSCF

    ans = conn.request(sar(ALICE, ALICE_IMPUS[0], 5))  # USER_DEREGISTRATION
    assert result(ans) == 2001 and ans.find(AVP_USER_DATA, VENDOR_3GPP) is None
    assert hss.registration_state(ALICE_IMPUS[0]) == RegState.NOT_REGISTERED
    assert hss.assigned_server_name(ALICE) is None
    assert experimental(conn.request(lir(ALICE_IMPUS[0]))) == 5003
    assert experimental(conn.request(uar(ALICE, ALICE_IMPUS[0], uat=1))) == 5003
    assert [r.server_assignment_type for r in hss.requests_of("SAR")] == [1, 1, 5]


def test_unregistered_services(hss, conn):
    ans = conn.request(lir(BOB_IMPU))
    assert experimental(ans) == 2003  # DIAMETER_UNREGISTERED_SERVICE
    assert ans.find(AVP_SERVER_CAPABILITIES, VENDOR_3GPP) is not None
    ans = conn.request(sar(BOB, BOB_IMPU, 3))  # UNREGISTERED_USER
    assert result(ans) == 2001 and ans.find(AVP_USER_DATA, VENDOR_3GPP) is not None
    assert hss.registration_state(BOB_IMPU) == RegState.UNREGISTERED
    ans = conn.request(lir(BOB_IMPU))
    assert result(ans) == 2001 and ans.find(AVP_SERVER_NAME, VENDOR_3GPP).as_str() == SCSCF


def test_protocol_errors_are_answered_and_the_thread_survives(hss, conn):
    req = cx(302)  # LIR without Public-Identity
    ans = conn.request(req)
    assert result(ans) == d.DIAMETER_MISSING_AVP
    failed = ans.find(d.AVP_FAILED_AVP).as_grouped()[0]
    assert (failed.code, failed.vendor_id) == (AVP_PUBLIC_IDENTITY, VENDOR_3GPP)
    unknown_cmd = cx(399)
    ans = conn.request(unknown_cmd)
    assert ans.error and ans.result_code == d.DIAMETER_COMMAND_UNSUPPORTED
    # a request whose AVP length is broken still gets an answer
    broken = lir(ALICE_IMPUS[0])
    raw = bytearray(broken.encode())
    raw[d.HEADER_LEN + 5 : d.HEADER_LEN + 8] = (4000).to_bytes(3, "big")
    conn.sock.sendall(bytes(raw))
    ans = conn.recv()
    assert ans.hop_by_hop == broken.hop_by_hop and ans.result_code == d.DIAMETER_INVALID_AVP_LENGTH
    assert len(hss.take_errors()) == 1  # expected, and logged
    assert experimental(conn.request(lir(ALICE_IMPUS[0]))) == 5003  # still serving


def test_stop_closes_everything():
    double = CxHssTestDouble({ALICE: dict(k=K, op=OP, impus=ALICE_IMPUS)}, port=0).start()
    host, port = double.address
    c = d.DiameterConnection(host, port)
    assert c.request(d.build_cer(CLIENT, c.local_ip)).result_code == 2001
    double.stop()
    assert c.recv() is None
    with pytest.raises(OSError):
        socket.create_connection((host, port), timeout=1).close()
    c.close()

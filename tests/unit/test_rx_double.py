"""The Rx PCRF test double over a real socket, checked against TS 29.214 (AAR/AAA, STR/STA,
ASR/ASA, RAR/RAA) and the requests Kamailio's ims_qos sends."""

from __future__ import annotations

import socket
import threading

import pytest

from tests.doubles import diameter as d
from tests.doubles import rx_pcrf as rx
from tests.doubles.rx_pcrf import RX_APPLICATION_ID, VENDOR_3GPP, RxPcrfTestDouble

REALM = "ims.mnc001.mcc001.3gppnetwork.org"
CLIENT = d.LocalPeer(
    "pcscf." + REALM, REALM, auth_application_ids=((VENDOR_3GPP, RX_APPLICATION_ID),), supported_vendor_ids=(VENDOR_3GPP,)
)
UE = "10.45.0.7"
IMPU = "sip:alice@" + REALM


@pytest.fixture
def pcrf():
    double = RxPcrfTestDouble(bind_address="127.0.0.1", port=0)
    double.start()
    yield double
    double.stop()
    assert double.errors == []


@pytest.fixture
def conn(pcrf):
    c = d.DiameterConnection(*pcrf.address)
    assert c.request(d.build_cer(CLIENT, c.local_ip)).result_code == d.DIAMETER_SUCCESS
    yield c
    c.close()


def v3(code, value):
    return d.Avp.u32(code, value, VENDOR_3GPP) if isinstance(value, int) else d.Avp.utf8(code, value, VENDOR_3GPP)


def flows(number: int, usage: int, *descriptions: str) -> d.Avp:
    return d.Avp.grouped(
        rx.AVP_MEDIA_SUB_COMPONENT,
        [v3(rx.AVP_FLOW_NUMBER, number), *(v3(rx.AVP_FLOW_DESCRIPTION, fd) for fd in descriptions), v3(rx.AVP_FLOW_USAGE, usage)],
        VENDOR_3GPP,
    )


def rx_request(command: int, session: str, *avps: d.Avp) -> d.Message:
    """Shaped like ims_qos' (rx_send_aar / rx_send_str)."""
    msg = d.Message(command, RX_APPLICATION_ID, request=True, proxiable=True)
    msg.add(
        d.Avp.utf8(d.AVP_SESSION_ID, session),
        d.Avp.u32(d.AVP_AUTH_APPLICATION_ID, RX_APPLICATION_ID),
        *CLIENT.origin_avps(),
        d.Avp.utf8(d.AVP_DESTINATION_REALM, rx.DEFAULT_ORIGIN_REALM),
        *avps,
    )
    return msg


def media_aar(session: str, ue_port: int = 6000, far: str = "10.0.0.40 40000") -> d.Message:
    component = d.Avp.grouped(
        rx.AVP_MEDIA_COMPONENT_DESCRIPTION,
        [
            v3(rx.AVP_MEDIA_COMPONENT_NUMBER, 1),
            flows(1, rx.FLOW_USAGE_NO_INFORMATION, f"permit out 17 from {far} to {UE} {ue_port}",
                  f"permit in 17 from {UE} {ue_port} to {far}"),
            v3(rx.AVP_MEDIA_TYPE, 0),
            v3(rx.AVP_MAX_REQUESTED_BANDWIDTH_UL, 64000),
            v3(rx.AVP_FLOW_STATUS, 2),
            v3(rx.AVP_CODEC_DATA, "uplink\noffer\nm=audio 6000 RTP/AVP 0\r\n"),
        ],
        VENDOR_3GPP,
    )
    return rx_request(
        rx.CMD_AA, session,
        v3(rx.AVP_AF_APPLICATION_IDENTIFIER, "IMS Services"),
        component,
        d.Avp.grouped(rx.AVP_SUBSCRIPTION_ID, [d.Avp.u32(rx.AVP_SUBSCRIPTION_ID_TYPE, 2), d.Avp.utf8(rx.AVP_SUBSCRIPTION_ID_DATA, IMPU)]),
        d.Avp.octets(rx.AVP_FRAMED_IP_ADDRESS, socket.inet_aton(UE)),
        v3(rx.AVP_SPECIFIC_ACTION, 2),
        d.Avp.u32(rx.AVP_AUTHORIZATION_LIFETIME, 7200),
    )


def signalling_aar(session: str) -> d.Message:
    component = d.Avp.grouped(
        rx.AVP_MEDIA_COMPONENT_DESCRIPTION,
        [v3(rx.AVP_MEDIA_COMPONENT_NUMBER, 1),
         flows(1, rx.FLOW_USAGE_AF_SIGNALLING, f"permit out ip from 10.0.0.11 5060 to {UE} 5060")],
        VENDOR_3GPP,
    )
    return rx_request(rx.CMD_AA, session, component, d.Avp.octets(rx.AVP_FRAMED_IP_ADDRESS, socket.inet_aton(UE)))


def str_(session: str) -> d.Message:
    return rx_request(rx.CMD_SESSION_TERMINATION, session, d.Avp.u32(rx.AVP_TERMINATION_CAUSE, 1))


def assert_rx_answer(ans: d.Message, req: d.Message) -> None:
    """What TS 29.214 5.6.2/5.6.4 put in every AAA/STA."""
    assert not ans.request and ans.command_code == req.command_code and ans.application_id == RX_APPLICATION_ID
    assert (ans.hop_by_hop, ans.end_to_end) == (req.hop_by_hop, req.end_to_end)
    assert ans.avps[0].code == d.AVP_SESSION_ID and ans.session_id == req.session_id
    assert ans.u32_of(d.AVP_AUTH_APPLICATION_ID) == RX_APPLICATION_ID
    assert ans.str_of(d.AVP_ORIGIN_HOST) == rx.DEFAULT_ORIGIN_HOST
    assert ans.str_of(d.AVP_ORIGIN_REALM) == rx.DEFAULT_ORIGIN_REALM


def test_cer_advertises_rx(pcrf):
    with d.DiameterConnection(*pcrf.address) as c:
        cea = c.request(d.build_cer(CLIENT, c.local_ip))
        assert cea.result_code == 2001
        vsai = cea.find(d.AVP_VENDOR_SPECIFIC_APPLICATION_ID)
        assert vsai.find(d.AVP_VENDOR_ID).as_u32() == VENDOR_3GPP
        assert vsai.find(d.AVP_AUTH_APPLICATION_ID).as_u32() == RX_APPLICATION_ID
        assert [a.as_u32() for a in cea.find_all(d.AVP_SUPPORTED_VENDOR_ID)] == [VENDOR_3GPP]
        assert pcrf.wait_for_peer(CLIENT.origin_host, timeout=2) == CLIENT.origin_host


def test_cer_without_rx_is_refused(pcrf):
    cx_only = d.LocalPeer("scscf." + REALM, REALM, auth_application_ids=((VENDOR_3GPP, 16777216),))
    with d.DiameterConnection(*pcrf.address) as c:
        assert c.request(d.build_cer(cx_only, c.local_ip)).result_code == d.DIAMETER_NO_COMMON_APPLICATION
        assert c.recv() is None  # closed
    assert len(pcrf.take_errors()) == 1  # expected, and logged


def test_aar_media_is_answered_and_recorded(pcrf, conn):
    req = media_aar("pcscf;1;1")
    ans = conn.request(req)
    assert_rx_answer(ans, req)
    assert ans.result_code == d.DIAMETER_SUCCESS and ans.experimental_result is None
    rec = pcrf.wait_for_request("AAR")
    assert (rec.session_id, rec.framed_ip, rec.af_application_id) == ("pcscf;1;1", UE, "IMS Services")
    assert rec.subscription_ids == (("SIP_URI", IMPU),) and rec.specific_actions == (2,)
    assert rec.rx_request_type is None and rec.unknown_mandatory == () and not rec.signalling
    (mc,) = rec.media_components
    assert (mc.number, mc.media_type, mc.flow_status, mc.max_requested_bandwidth_ul) == (1, "audio", 2, 64000)
    assert mc.flow_descriptions == (f"permit out 17 from 10.0.0.40 40000 to {UE} 6000", f"permit in 17 from {UE} 6000 to 10.0.0.40 40000")
    assert mc.codec_data[0].startswith("uplink\noffer\n")
    assert rec.flow_descriptions == mc.flow_descriptions and rec.result_code == 2001
    assert pcrf.open_sessions == ["pcscf;1;1"]


def test_signalling_aar_is_told_apart(pcrf, conn):
    conn.request(signalling_aar("pcscf;1;2"))
    rec = pcrf.wait_for_request("AAR")
    assert rec.signalling and rec.media_components[0].sub_components[0].flow_usage == rx.FLOW_USAGE_AF_SIGNALLING


def test_str_closes_the_session_and_unknown_sessions_get_5002(pcrf, conn):
    conn.request(media_aar("pcscf;2;1"))
    req = str_("pcscf;2;1")
    sta = conn.request(req)
    assert_rx_answer(sta, req)
    assert sta.result_code == 2001 and pcrf.open_sessions == []
    rec = pcrf.wait_for_request("STR")
    assert rec.termination_cause == 1 and rec.result_code == 2001
    assert conn.request(str_("pcscf;2;1")).result_code == rx.DIAMETER_UNKNOWN_SESSION_ID
    update = media_aar("pcscf;2;9")
    update.add(v3(rx.AVP_RX_REQUEST_TYPE, rx.RX_REQUEST_UPDATE))
    assert conn.request(update).result_code == rx.DIAMETER_UNKNOWN_SESSION_ID


def test_policy_refusal_uses_experimental_result_and_opens_nothing(pcrf, conn):
    pcrf.aar_policy = rx.refuse_media(rx.REQUESTED_SERVICE_NOT_AUTHORIZED)
    assert conn.request(signalling_aar("pcscf;3;1")).result_code == 2001  # signalling still authorised
    ans = conn.request(media_aar("pcscf;3;2"))
    assert ans.result_code is None  # Result-Code and Experimental-Result are exclusive
    assert ans.experimental_result == (VENDOR_3GPP, rx.REQUESTED_SERVICE_NOT_AUTHORIZED)
    assert pcrf.open_sessions == ["pcscf;3;1"]
    assert pcrf.requests_of("AAR")[1].result_code == rx.REQUESTED_SERVICE_NOT_AUTHORIZED
    pcrf.aar_policy = lambda _req: d.DIAMETER_AUTHORIZATION_REJECTED  # a base code: Result-Code
    assert conn.request(media_aar("pcscf;3;3")).result_code == d.DIAMETER_AUTHORIZATION_REJECTED


def test_missing_avp_and_wrong_application_are_answered(pcrf, conn):
    bad = d.Message(rx.CMD_SESSION_TERMINATION, RX_APPLICATION_ID, request=True)
    bad.add(d.Avp.utf8(d.AVP_SESSION_ID, "pcscf;4;1"), *CLIENT.origin_avps())
    ans = conn.request(bad)
    assert ans.result_code == d.DIAMETER_MISSING_AVP and ans.find(d.AVP_FAILED_AVP) is not None
    other = d.Message(rx.CMD_AA, 16777216, request=True)
    other.add(d.Avp.utf8(d.AVP_SESSION_ID, "pcscf;4;2"))
    assert conn.request(other).result_code == d.DIAMETER_APPLICATION_UNSUPPORTED


def test_asr_and_rar_reach_the_af_on_its_connection(pcrf, conn):
    conn.request(media_aar("pcscf;5;1"))
    got: dict = {}

    def af() -> None:  # the AF side: answer what the PCRF sends
        for _ in range(2):
            req = conn.recv()
            got[req.command_code] = req
            ans = req.answer()
            ans.add(req.find(d.AVP_SESSION_ID), *CLIENT.origin_avps(), d.Avp.u32(d.AVP_RESULT_CODE, 2001))
            conn.send(ans)

    t = threading.Thread(target=af)
    t.start()
    raa = pcrf.reauth("pcscf;5;1", (rx.SPECIFIC_ACTION_INDICATION_OF_LOSS_OF_BEARER,))
    asa = pcrf.abort_session("pcscf;5;1", rx.ABORT_CAUSE_BEARER_RELEASED)
    t.join(5)
    assert raa.result_code == 2001 and asa.result_code == 2001
    rar, asr = got[rx.CMD_RE_AUTH], got[rx.CMD_ABORT_SESSION]
    assert rar.request and rar.application_id == RX_APPLICATION_ID and rar.session_id == "pcscf;5;1"
    assert rar.str_of(d.AVP_DESTINATION_HOST) == CLIENT.origin_host
    assert [a.as_u32() for a in rar.find_all(rx.AVP_SPECIFIC_ACTION, VENDOR_3GPP)] == [2]
    assert asr.u32_of(rx.AVP_ABORT_CAUSE, VENDOR_3GPP) == 0
    with pytest.raises(KeyError):
        pcrf.abort_session("no-such-session")


def test_a_failure_is_answered_and_the_thread_survives(pcrf, conn):
    def broken(_req):
        raise RuntimeError("policy bug")

    pcrf.aar_policy = broken
    ans = conn.request(media_aar("pcscf;6;1"))
    assert ans.result_code == d.DIAMETER_UNABLE_TO_COMPLY
    pcrf.aar_policy = rx.accept_all
    assert conn.request(media_aar("pcscf;6;2")).result_code == 2001  # same connection, same thread
    assert len(pcrf.take_errors()) == 1  # expected, and logged


def test_stop_closes_everything():
    double = RxPcrfTestDouble(bind_address="127.0.0.1", port=0).start()
    c = d.DiameterConnection(*double.address)
    c.request(d.build_cer(CLIENT, c.local_ip))
    double.stop()
    assert c.recv() is None
    c.close()

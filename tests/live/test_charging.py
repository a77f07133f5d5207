"""Live: online charging over Ro, the S-CSCF's real ims_charging against a real cgr-engine.

cgr-engine (built from the Go module at the pinned version) runs the rendered cgrates.json,
with Valkey database 3 as its DataDB and PostgreSQL as its StorDB; the plan (tariff and
balances) goes in through the loader Job's script and CGRateS' API. The S-CSCF of the live
core is restarted for this module with the config rendered for a stack with charging on,
and restored afterwards. SIPp UEs call through the P-CSCF.

The tariff: calls to "bob" cost 0.60 a minute, billed per second (0.01 a second). Calls are
kept short; the cut-off test gives the caller 5 seconds of credit.
"""

from __future__ import annotations

import re
import signal
import subprocess
import time
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest

from components.render import cgrates as render_cgrates
from components.render import kamailio as render_kamailio
from components.settings import Settings
from tests import debian_root
from tests.cgrates_daemon import STORDB_PASSWORD, Cgrates, StorDb
from tests.live import charging_scenarios, sipp
from tests.live.conftest import DAEMONS, Daemon, _wait
from tests.profiles import TEST_VALKEY_PASSWORD, loopback_settings

STORDB_ADDRESS = "127.0.0.51"
PER_SECOND = Decimal("0.01")
CHARGING = {
    "enabled": True,
    "whenUnreachable": "refuse",
    "currency": "EUR",
    "destinations": [{"name": "lab", "prefixes": ["bob"], "pricePerMinute": "0.60", "incrementSeconds": 1}],
    "balances": [{"subscriber": "alice", "amount": "10.00"}, {"subscriber": "carol", "amount": "0"}],
}


def charging_settings(**charging) -> Settings:
    return loopback_settings(
        stack="live", pcscfIpsec=False, pcscfRx=True, charging={**CHARGING, **charging},
        cgratesStorDbPassword=STORDB_PASSWORD,
    )


@dataclass
class Billing:
    core: object
    settings: Settings
    engine: Cgrates
    stordb: StorDb
    workdir: Path

    def start_scscf(self, settings: Settings) -> None:
        """(Re)start the S-CSCF on the config rendered from `settings`; with charging on, wait
        until its Ro connection to CGRateS is up."""
        old = self.core.kamailio.get("scscf")
        if old is not None:
            old.stop()
            # Keep the stopped S-CSCF's log: the restart writes a new one under the same name.
            if old.log.exists():
                old.log.rename(old.log.with_name(f"{old.log.stem}.{time.strftime('%H%M%S')}{time.monotonic_ns() % 1000}.log"))
        config_dir = self.workdir / "scscf"
        files = render_kamailio.render(settings, "scscf", config_dir=str(config_dir), bind_address=True)
        files.update(render_kamailio.render_secrets(settings, "scscf", TEST_VALKEY_PASSWORD))
        for rel, text in files.items():
            path = config_dir / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        daemon = self.core.start_cscf("scscf")
        if settings.charging.enabled and self.engine.process and self.engine.process.alive():
            _wait(self.ro_connected, 15, "the S-CSCF's Ro connection to CGRateS", daemon)

    def ro_connected(self) -> bool:
        out = self.core.ns.run(["ss", "-Htn", "state", "established", "dst", f"{self.engine.address}:{render_cgrates.DIAMETER_PORT}"],
                               capture_output=True, text=True).stdout
        return bool(out.strip())

    def stats(self) -> dict[str, int]:
        """ims_charging's own counters (initial_ccrs, interim_ccrs, final_ccrs, successful_*)."""
        socket = self.workdir / "scscf" / "kamailio_ctl"
        out = subprocess.run(debian_root.command(["kamcmd", "-s", f"unix:{socket}", "stats.get_statistics", "ims_charging:"]),
                             capture_output=True, text=True, timeout=10).stdout
        return {m.group(1): int(m.group(2)) for m in re.finditer(r"ims_charging:(\w+) = (\d+)", out)}

    def set_balance(self, account: str, amount: str) -> None:
        if Decimal(amount) == 0:
            # SetBalance takes a Value of 0 as "not given" and leaves the balance as it is.
            self.engine.api("APIerSv1.RemoveBalances", {
                "Tenant": render_cgrates.tenant(self.settings), "Account": account, "BalanceType": "*monetary",
                "Balance": {"ID": "initial"}})
            return
        self.engine.api("APIerSv1.SetBalance", {
            "Tenant": render_cgrates.tenant(self.settings), "Account": account, "BalanceType": "*monetary",
            "Value": float(amount), "Balance": {"ID": "initial"}})

    def balance(self, account: str) -> Decimal:
        return Decimal(str(self.engine.balance(account))).quantize(Decimal("0.0001"))

    def cdrs(self, account: str) -> list[dict]:
        try:
            return self.engine.api("APIerSv1.GetCDRs", {"Accounts": [account]}) or []
        except RuntimeError as exc:
            if "NOT_FOUND" in str(exc):
                return []
            raise

    def wait_cdr(self, account: str, count: int, timeout: float = 10) -> list[dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.cdrs(account)
            if len(found) >= count:
                return found
            time.sleep(0.3)
        raise AssertionError(f"no CDR number {count} for {account} within {timeout}s: {self.cdrs(account)}")


@pytest.fixture(scope="module")
def billing(core, valkey, netns, workdir) -> Billing:
    settings = charging_settings()
    # A clean DataDB: CGRateS' database in Valkey, as a fresh stack has it.
    valkey.server.cli("FLUSHDB", db=settings.valkey_databases["cgrates"])
    stordb = StorDb(STORDB_ADDRESS, netns)
    engine = Cgrates(settings, workdir / "cgrates", netns, TEST_VALKEY_PASSWORD, STORDB_ADDRESS)
    b = Billing(core, settings, engine, stordb, workdir)
    try:
        stordb.start()
        DAEMONS.append(Daemon("postgres (StorDB)", stordb.process.argv, stordb.process.log, stordb.process.proc))
        engine.start()
        DAEMONS.append(Daemon("cgr-engine", engine.process.argv, engine.process.log, engine.process.proc))
        loaded = engine.load_plan()
        assert loaded.returncode == 0, loaded.stdout + loaded.stderr
        b.start_scscf(settings)
        yield b
    finally:
        try:
            b.start_scscf(core.settings)  # the live profile's S-CSCF, charging off, for the other modules
        finally:
            engine.stop()
            stordb.stop()


def register(core, *ues) -> None:
    for ue in ues:
        run = core.sipp(ue, sipp.register(ue, core.settings.ims_domain), f"register-{ue.name}-charging")
        assert run.returncode == 0, run.explain()


def usage_seconds(cdr: dict) -> Decimal:
    """A CDR's Usage as CGRateS' API gives it (nanoseconds, or a Go duration string)."""
    usage = cdr["Usage"]
    if isinstance(usage, int | float):
        return Decimal(int(usage)) / Decimal(10**9)
    match = re.fullmatch(r"(?:(\d+)m)?([\d.]+)s", str(usage))
    assert match, usage
    return Decimal(match.group(1) or 0) * 60 + Decimal(match.group(2))


def test_plan_is_loaded_through_the_api_and_a_rerun_keeps_spent_balances(billing):
    assert billing.balance("alice") == Decimal("10.0000")
    assert billing.balance("carol") == Decimal("0.0000")
    plan = billing.engine.api("APIerSv1.GetRatingProfile", {
        "Tenant": render_cgrates.tenant(billing.settings), "Category": "call", "Subject": "*any"})
    assert plan["RatingPlanActivations"][0]["RatingPlanId"] == "RP_ims_core", plan

    billing.set_balance("alice", "7.5")
    again = billing.engine.load_plan()
    assert again.returncode == 0, again.stdout + again.stderr
    assert "2 existing accounts kept" in again.stdout, again.stdout
    assert billing.balance("alice") == Decimal("7.5000")


def test_call_debits_the_rated_amount_with_ccr_initial_update_terminate(billing):
    core = billing.core
    alice, bob = core.users.alice, core.users.bob
    register(core, alice, bob)
    # 0.10 is 10 s of credit: CCR-Initial is granted 10 s, the S-CSCF asks again 5 s before they
    # run out (CCR-Update), and the BYE after ~7 s ends the session (CCR-Terminate).
    billing.set_balance("alice", "0.10")
    before, cdrs_before = billing.stats(), len(billing.cdrs("alice"))
    callee = core.sipp(bob, sipp.answer(bob), "answer-bob-charged", timeout=20, background=True)
    caller = core.sipp(alice, sipp.call(alice, bob, core.settings.ims_domain, hold_ms=7000), "call-alice-charged",
                       timeout=20)
    callee.wait()
    assert caller.returncode == 0, caller.explain()
    assert callee.returncode == 0, callee.explain()

    cdr = billing.wait_cdr("alice", cdrs_before + 1)[-1]
    after = billing.stats()
    delta = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    assert delta["initial_ccrs"] == delta["successful_initial_ccrs"] == 1, delta
    # One or two CCR-Updates, as the grants and the S-CSCF's timer fall, every one answered.
    assert delta["interim_ccrs"] == delta["successful_interim_ccrs"] >= 1, delta
    assert delta["final_ccrs"] == delta["successful_final_ccrs"] == 1, delta

    seconds = usage_seconds(cdr)
    assert Decimal(6) <= seconds <= Decimal(9), cdr
    rated = seconds.to_integral_value(rounding="ROUND_CEILING") * PER_SECOND
    assert Decimal(str(cdr["Cost"])).quantize(Decimal("0.0001")) == rated, cdr
    assert billing.balance("alice") == Decimal("0.10") - rated
    assert cdr["Destination"] == "bob" and cdr["RequestType"] == "*prepaid", cdr


def test_caller_without_credit_is_refused_and_no_call_is_made(billing):
    core = billing.core
    alice, bob = core.users.alice, core.users.bob
    register(core, alice, bob)
    billing.set_balance("alice", "0")
    cdrs_before = billing.cdrs("alice")
    callee = core.sipp(bob, sipp.answer(bob), "answer-bob-never", timeout=6, background=True)
    run = core.sipp(alice, sipp.call_refused(alice, bob, core.settings.ims_domain, "402"), "call-alice-no-credit")
    callee.wait()
    assert run.returncode == 0, run.explain()
    (refusal,) = [m for m in run.received("SIP/2.0 402") if "CSeq: 1 INVITE" in m]
    assert "Insufficient Credit" in refusal.splitlines()[0], refusal
    assert callee.received("INVITE ") == [], callee.messages
    # ims_charging closes the refused session with a CCR-Terminate: at most a record of nothing.
    new = [c for c in billing.cdrs("alice") if c["CGRID"] not in {old["CGRID"] for old in cdrs_before}]
    assert all(usage_seconds(c) == 0 and c["Cost"] in (0, -1) for c in new), new
    assert billing.balance("alice") == Decimal("0.0000")


def test_call_is_cut_off_when_the_credit_runs_out(billing):
    core = billing.core
    alice, bob = core.users.alice, core.users.bob
    register(core, alice, bob)
    billing.set_balance("alice", "0.05")  # 5 seconds
    cdrs_before = len(billing.cdrs("alice"))
    callee = core.sipp(bob, sipp.answer(bob), "answer-bob-cut", timeout=30, background=True)
    started = time.monotonic()
    caller = core.sipp(alice, charging_scenarios.call_cut_off(alice, bob, wait_bye_ms=20000), "call-alice-cut",
                       timeout=30)
    lasted = time.monotonic() - started
    callee.wait()
    # Both UEs got the network's BYE (SIPp fails the scenario otherwise), ~5 s into the call.
    assert caller.returncode == 0, caller.explain()
    assert callee.returncode == 0, callee.explain()
    assert 4 <= lasted <= 15, lasted
    cdr = billing.wait_cdr("alice", cdrs_before + 1)[-1]
    assert Decimal(4) <= usage_seconds(cdr) <= Decimal(7), cdr
    assert Decimal("-0.0200") <= billing.balance("alice") <= Decimal("0.0000")


def test_balances_and_cdrs_survive_a_cgrates_restart(billing):
    billing.set_balance("carol", "1.23")
    cdrs = billing.cdrs("alice")
    assert cdrs, "the earlier calls left CDRs"
    billing.engine.stop(signal.SIGKILL)
    billing.engine.start()
    assert billing.balance("carol") == Decimal("1.2300")
    assert [c["CGRID"] for c in billing.cdrs("alice")] == [c["CGRID"] for c in cdrs]
    billing.set_balance("carol", "0")
    _wait(billing.ro_connected, 40, "the S-CSCF reconnecting to CGRateS", billing.core.kamailio["scscf"])


@pytest.mark.parametrize("policy, expected", [("refuse", "500"), ("allow", "200")])
def test_cgrates_unreachable_follows_the_setting(billing, policy, expected):
    core = billing.core
    alice, bob = core.users.alice, core.users.bob
    billing.start_scscf(charging_settings(whenUnreachable=policy))
    billing.engine.stop()
    try:
        _wait(lambda: not billing.ro_connected(), 15, "the Ro connection to close", core.kamailio["scscf"])
        register(core, alice, bob)
        if expected == "500":
            run = core.sipp(alice, sipp.call_refused(alice, bob, core.settings.ims_domain, "500"), f"call-unreachable-{policy}")
            assert run.returncode == 0, run.explain()
            assert "Charging Unreachable" in run.received("SIP/2.0 500")[0].splitlines()[0]
        else:
            callee = core.sipp(bob, sipp.answer(bob), f"answer-unreachable-{policy}", timeout=20, background=True)
            run = core.sipp(alice, sipp.call(alice, bob, core.settings.ims_domain, hold_ms=500), f"call-unreachable-{policy}")
            callee.wait()
            assert run.returncode == 0, run.explain()
            assert callee.returncode == 0, callee.explain()
    finally:
        billing.engine.start()
        billing.start_scscf(billing.settings)

"""Kamailio sizing and P-CSCF overload control as stack settings (components/sizing.py).

What a user notices: the worker count and the overload limit reach the rendered defines,
the memory pools reach Kamailio's command line in the pod, and a size that cannot fit the
pod's memory limit is refused with the keys to change, before anything is created.
"""

from __future__ import annotations

import pytest

from components.render import kamailio as render_kamailio
from components.settings import SettingsError
from tests.profiles import stack_settings
from tests.unit.conftest import container, run_program


def test_workers_and_overload_limit_reach_the_rendered_defines():
    settings = stack_settings(pcscfWorkers=8, scscfWorkers=2, pcscfOverloadPendingLimit=250, pcscfOverloadRetryAfter=30)
    pcscf = render_kamailio.defines(settings, "pcscf")
    assert "#!define CHILDREN 8" in pcscf.splitlines()
    assert "#!define OVERLOAD_PENDING_LIMIT 250" in pcscf.splitlines()
    assert "#!define OVERLOAD_RETRY_AFTER 30" in pcscf.splitlines()
    scscf = render_kamailio.defines(settings, "scscf")
    assert "#!define CHILDREN 2" in scscf.splitlines()
    assert "OVERLOAD_PENDING_LIMIT" not in scscf and "OVERLOAD_REGISTER_RATE" not in scscf


def test_every_cscf_sheds_before_its_shared_pool_runs_out():
    """Each CSCF's memory gauge is a fifth of its own pool, and its config calls it."""
    settings = stack_settings(
        pcscfShmMb=160, icscfShmMb=128, scscfShmMb=256, pcscfMemory="512Mi", scscfMemory="512Mi",
        pcscfOverloadRetryAfter=7,
    )
    for role, mb in (("pcscf", 160), ("icscf", 128), ("scscf", 256)):
        defines = render_kamailio.defines(settings, role).splitlines()
        assert f"#!define OVERLOAD_SHM_FREE {mb * 2**20 // 5}" in defines
        assert "#!define OVERLOAD_RETRY_AFTER 7" in defines
        files = render_kamailio.render(settings, role)
        assert "$stat(free_size)" in files["route/overload.cfg"]
        assert "route(OVERLOAD);" in files["kamailio.cfg"]


def test_shared_pools_are_sized_for_the_admitted_registration_rate():
    """A pool too small for the registrations the P-CSCF admits is refused, naming the
    rate, what is held and what is needed; the shipped defaults fit."""
    stack_settings()
    with pytest.raises(SettingsError) as error:
        stack_settings(scscfShmMb=64, pcscfOverloadRegisterRate=200)
    assert (
        "scscfShmMb = 64: too small for pcscfOverloadRegisterRate = 200; the scscf holds about 2800 transactions "
        "of ~24 KB at that rate and sheds new work below 20 % free, so it needs at least 103 MB; raise scscfShmMb "
        "(and scscfMemory) or lower pcscfOverloadRegisterRate"
    ) in error.value.errors
    # A lower admitted rate fits the smaller pool.
    stack_settings(pcscfShmMb=64, icscfShmMb=64, scscfShmMb=64, pcscfOverloadRegisterRate=100)


def test_shipped_pcscf_config_calls_the_overload_route_on_gm():
    files = render_kamailio.render(stack_settings(), "pcscf")
    assert "route/overload.cfg" in files
    assert 'include_file "route/overload.cfg"' in files["kamailio.cfg"]
    assert "route(OVERLOAD);" in files["kamailio.cfg"]


def test_memory_pools_reach_the_kamailio_command_line():
    run = run_program({"scscfShmMb": 128, "scscfPkgMb": 16, "scscfMemory": "512Mi"})
    assert run.error is None, run.error
    args = container(run.mocks.named("scscf-deployment"))["args"]
    assert args[args.index("-m") + 1] == "128" and args[args.index("-M") + 1] == "16"
    pcscf = container(run.mocks.named("pcscf-deployment"))["args"]
    assert pcscf[pcscf.index("-m") + 1] == "128"


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"pcscfWorkers": 0}, "pcscfWorkers = 0: must be between 1 and 64"),
        ({"icscfPkgMb": 2}, "icscfPkgMb = 2: must be between 4 and 1024"),
        ({"pcscfOverloadPendingLimit": 5}, "pcscfOverloadPendingLimit = 5: must be between 10 and 100000"),
        ({"pcscfOverloadRetryAfter": "soon"}, "pcscfOverloadRetryAfter = 'soon': must be a whole number"),
        (
            {"scscfShmMb": 512},
            "scscfShmMb = 512, scscfWorkers = 4: the shared pool plus the private memory of 20 processes comes to "
            "552 MiB, more than scscfMemory = '256Mi'; raise scscfMemory or lower scscfShmMb or scscfWorkers",
        ),
    ],
)
def test_bad_sizes_are_refused_with_the_key_and_what_is_allowed(config, message):
    with pytest.raises(SettingsError) as error:
        stack_settings(**config)
    assert message in error.value.errors


def test_every_bad_size_is_reported_at_once_and_nothing_is_created():
    run = run_program({"pcscfWorkers": 100, "scscfShmMb": 4000})
    assert run.error is not None
    assert "pcscfWorkers = 100" in str(run.error) and "scscfShmMb = 4000" in str(run.error)
    assert not [r for r in run.resources if r.typ.startswith("kubernetes:")]

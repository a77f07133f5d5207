"""The UE-pool return route the stack renders (components/render/ue_route.py): which pools, and
a script `sh` accepts. tests/live/test_ue_route.py runs it on a two-node model."""

from __future__ import annotations

import subprocess

from components.render import ue_route
from tests.profiles import stack_settings


def test_only_the_routed_ims_pool_is_in_the_script_never_the_natted_internet_pool():
    s = stack_settings(ueImsPool="10.60.0.0/16", ueInternetPool="10.61.0.0/16")
    assert ue_route.routed_pools(s) == ["10.60.0.0/16"]
    script = ue_route.route_script(s)
    assert "for pool in 10.60.0.0/16; do" in script and "10.61.0.0" not in script
    assert 'ip route replace "$pool" via "$hop" dev "$dev" onlink' in script
    assert subprocess.run(["sh", "-n"], input=script, text=True, capture_output=True).returncode == 0


def test_without_open5gs_there_is_no_pool_to_route():
    assert ue_route.routed_pools(stack_settings(open5gs=False, hssAddress="192.0.2.1", pcrfAddress="192.0.2.2")) == []


def test_the_script_refuses_to_run_without_the_pgw_pod_address():
    result = subprocess.run(["sh", "-s"], input=ue_route.route_script(stack_settings()), text=True, capture_output=True)
    assert result.returncode != 0 and "usage: sh -s -- <PGW pod IP>" in result.stderr

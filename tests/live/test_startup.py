"""The CSCF pods' init-container scripts (components/render/startup.py), run for real.

Each script runs under busybox `sh` with busybox's applets first on PATH (as in the Alpine
images) and the Debian 13 root's valkey-cli, inside the live tier's network namespace: the IMS
DNS there is CoreDNS serving the rendered zones, the Valkey is the tier's, with its password.
What a user would see: the wait ends as soon as the thing waited for answers; a wrong password
ends it at once with a message naming the Secret; a dead end gives up at the deadline with a
message saying where to look.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from components.render import rtpengine as render_rtpengine
from components.render import startup
from components.render.valkey import VALKEY_PORT
from tests import debian_root
from tests.profiles import TEST_VALKEY_PASSWORD
from tests.tooling import ROOT

SECRET = "valkey-auth-abc123"
RTPENGINE_PING = ROOT / "dockerfiles" / "rtpengine" / "alpine" / "rtpengine-ng-ping"
# An address in the namespace's loopback range where nothing listens.
NOTHING_THERE = "127.0.0.254"


@pytest.fixture(scope="module")
def applets() -> str:
    """A directory of busybox applet links, inside /tmp (which the Debian root shares)."""
    debian_root.require()
    path = f"/tmp/ims-startup-applets-{os.getpid()}"
    os.makedirs(path, exist_ok=True)
    for applet in ("sh", "date", "tr", "sleep", "nslookup", "echo", "printf"):
        link = os.path.join(path, applet)
        if not os.path.lexists(link):
            os.symlink("/usr/bin/busybox", link)
    # The rtpengine image's NG probe (socat from the root), as the P-CSCF's rtpengine wait runs it.
    shutil.copy(RTPENGINE_PING, os.path.join(path, "rtpengine-ng-ping"))
    yield path
    for name in os.listdir(path):
        os.unlink(os.path.join(path, name))
    os.rmdir(path)


def run_script(netns, applets: str, script: str, password: str | None = None) -> subprocess.CompletedProcess:
    # The password in the environment, as the pod's secretKeyRef puts it, never in argv.
    env = {k: v for k, v in os.environ.items() if k not in ("REDISCLI_AUTH", "VALKEYCLI_AUTH")}
    if password is not None:
        env["REDISCLI_AUTH"] = password
    inside = ["/usr/bin/env", f"PATH={applets}:/usr/bin:/bin", "/usr/bin/busybox", "sh", "-ec", script]
    argv = netns.prefix() + debian_root.command(inside)
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)


def test_dns_wait_ends_when_the_ims_dns_answers_the_pods_name(live_settings, netns, applets):
    fqdn, server = live_settings.nf("scscf").fqdn, live_settings.nf("coredns").address
    result = run_script(netns, applets, startup.wait_for_dns(fqdn, server, deadline=10))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"IMS DNS {server} answers {fqdn}" in result.stdout


def test_dns_wait_gives_up_at_the_deadline_and_says_where_to_look(live_settings, netns, applets):
    fqdn = f"nosuch.{live_settings.ims_domain}"
    server = live_settings.nf("coredns").address
    result = run_script(netns, applets, startup.wait_for_dns(fqdn, server, deadline=3))
    assert result.returncode == startup.EXIT_TIMEOUT, result.stdout + result.stderr
    assert f"gave up after 3s: the IMS DNS at {server} does not answer {fqdn}" in result.stderr
    assert "kubectl get pods -l app.kubernetes.io/name=coredns" in result.stderr
    assert f"waiting for the IMS DNS at {server}" in result.stdout


def test_valkey_wait_ends_on_an_authenticated_pong(live_settings, netns, valkey, applets):
    host = live_settings.nf("valkey").address
    result = run_script(netns, applets, startup.wait_for_valkey(host, VALKEY_PORT, SECRET, 10), TEST_VALKEY_PASSWORD)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Valkey answers" in result.stdout


def test_a_wrong_valkey_password_stops_the_wait_at_once(live_settings, netns, valkey, applets):
    host = live_settings.nf("valkey").address
    script = startup.wait_for_valkey(host, VALKEY_PORT, SECRET, 30)
    result = run_script(netns, applets, script, "not-the-valkey-password")
    assert result.returncode == startup.EXIT_REFUSED, result.stdout + result.stderr
    assert f"Valkey at {host}:{VALKEY_PORT} refuses the password from Secret {SECRET}" in result.stderr
    assert "not-the-valkey-password" not in result.stdout + result.stderr
    assert "waiting" not in result.stdout, "a refused password is not worth waiting for"


def test_valkey_wait_gives_up_at_the_deadline(netns, applets):
    script = startup.wait_for_valkey(NOTHING_THERE, VALKEY_PORT, SECRET, 3)
    result = run_script(netns, applets, script, TEST_VALKEY_PASSWORD)
    assert result.returncode == startup.EXIT_TIMEOUT, result.stdout + result.stderr
    assert f"gave up after 3s: Valkey at {NOTHING_THERE}:{VALKEY_PORT} does not answer" in result.stderr


def test_rtpengine_wait_ends_on_an_ng_pong(live_settings, netns, rtpengine, applets):
    host = live_settings.nf("rtpengine").address
    result = run_script(netns, applets, startup.wait_for_rtpengine(host, render_rtpengine.NG_PORT, 10))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "rtpengine answers" in result.stdout


def test_rtpengine_wait_gives_up_at_the_deadline_and_says_where_to_look(netns, applets):
    result = run_script(netns, applets, startup.wait_for_rtpengine(NOTHING_THERE, render_rtpengine.NG_PORT, 3))
    assert result.returncode == startup.EXIT_TIMEOUT, result.stdout + result.stderr
    port = render_rtpengine.NG_PORT
    assert f"gave up after 3s: rtpengine at {NOTHING_THERE}:{port} does not answer an NG ping" in result.stderr
    assert "kubectl get pods -l app.kubernetes.io/name=rtpengine" in result.stderr

"""Render tier: cgr-engine (the pinned build) accepts the rendered cgrates.json.

`cgr-engine -check_config` loads the whole config as the engine does at start-up (JSON,
sections, `*env:` substitution, connection names) and exits non-zero on any error.
"""

from __future__ import annotations

import os
import subprocess

import pytest

from components.render import cgrates as render_cgrates
from tests.cgrates_daemon import dictionaries_dir
from tests.profiles import loopback_settings, stack_settings
from tests.tooling import require_binary

CHARGING = {"enabled": True, "destinations": [{"name": "all", "prefixes": ["+"], "pricePerMinute": 0.1}]}
STACKS = {
    "default": lambda: stack_settings("default", charging=CHARGING, cgratesStorDbPassword="render-stordb-password"),
    "loopback": lambda: loopback_settings(charging=CHARGING, cgratesStorDbPassword="render-stordb-password"),
}


@pytest.mark.parametrize("stack", sorted(STACKS))
def test_cgr_engine_accepts_rendered_config(stack, tmp_path):
    binary = require_binary("cgr-engine", "go")
    settings = STACKS[stack]()
    text = render_cgrates.cgrates_json(settings, dictionaries_path=str(dictionaries_dir()) + "/")
    (tmp_path / "cgrates.json").write_text(text)
    env = {**os.environ, render_cgrates.VALKEY_PASSWORD_ENV: "x", render_cgrates.STORDB_PASSWORD_ENV: "y"}
    result = subprocess.run([binary, "-config_path", str(tmp_path), "-check_config"], capture_output=True, text=True,
                            env=env, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_cgr_engine_refuses_a_config_without_its_passwords(tmp_path):
    """The `*env:` references are real: without the variables the engine does not start."""
    binary = require_binary("cgr-engine", "go")
    settings = STACKS["default"]()
    (tmp_path / "cgrates.json").write_text(render_cgrates.cgrates_json(settings, dictionaries_path=str(dictionaries_dir()) + "/"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("CGRATES_")}
    result = subprocess.run([binary, "-config_path", str(tmp_path), "-check_config"], capture_output=True, text=True,
                            env=env, timeout=60)
    assert result.returncode != 0, result.stdout + result.stderr

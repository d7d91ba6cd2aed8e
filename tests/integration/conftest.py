"""Fixtures for the sluice integration tests.

The binary comes from $SLUICE_BIN (default: <repo>/build/dev/sluice), so that `make test`
can run the same suite against build/dev and build/asan.

    def test_x(sluice):                      # a server with the default test config
        r = sluice.get("/healthz")
    def test_y(start_sluice):                # a server with overrides (deep-merged)
        s = start_sluice({"limits": {"idle_timeout": "500ms"}})

At teardown every server started by a test gets SIGTERM and must exit 0 within 10 s, and
its stderr must hold no sanitizer report; otherwise the test fails.
"""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from helpers import (  # noqa: E402
    SLUICE_BIN,
    Sluice,
    deep_merge,
    default_config,
    free_ports,
    stop_and_check,
)


@pytest.fixture(scope="session", autouse=True)
def _binary_exists():
    if not (os.path.isfile(SLUICE_BIN) and os.access(SLUICE_BIN, os.X_OK)):
        pytest.exit(
            f"sluice binary not found or not executable: {SLUICE_BIN} (build it, or set SLUICE_BIN)",
            returncode=1,
        )


@pytest.fixture
def start_sluice(tmp_path):
    """Factory: start_sluice(overrides=None, wait=True, expect_rc=0, env=None) -> Sluice.

    overrides are deep-merged into the default config (a None value deletes a key).
    expect_rc is the exit status the teardown expects (None: do not check; the test did).
    """
    started = []

    def start(overrides=None, wait=True, expect_rc=0, env=None, ports=None):
        port, admin_port = ports or free_ports(2)
        cfg = deep_merge(default_config(port, admin_port), overrides or {})
        s = Sluice(tmp_path, cfg, name=f"sluice{len(started)}")
        s.expect_rc = expect_rc
        started.append(s)
        s.start(wait=wait, env=env)
        return s

    yield start

    problems = stop_and_check(started)
    if problems:
        pytest.fail("\n\n".join(problems), pytrace=False)


@pytest.fixture
def sluice(start_sluice):
    """A running server with the default test configuration."""
    return start_sluice()

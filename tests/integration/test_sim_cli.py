"""`sluice sim` on the command line: usage, configuration errors, start-up failures and
graceful shutdown."""

import signal
import socket
import subprocess
import threading
import time

import pytest

from helpers import run_sluice
from simtools import *  # noqa: F401,F403
from simtools import CHAT, SLUICE_BIN, az, call, chat_dep, connect_refused, endpoint, free_ports, stream, yaml_dump


def test_help():
    p = run_sluice(["sim", "--help"])
    assert p.returncode == 0, p.stderr
    assert "--config" in p.stdout and "--listen" in p.stdout


@pytest.mark.parametrize(
    "args",
    [["--config", "a.yaml", "--listen", "127.0.0.1:1"], ["--bogus"], ["--listen"], ["--listen", "not-an-address"]],
)
def test_bad_usage(args):
    p = run_sluice(["sim", *args])
    assert p.returncode == 2, (p.returncode, p.stderr)
    assert p.stderr.strip(), "no message"


def write_cfg(tmp_path, endpoints, extra=None):
    ports = free_ports(2)
    cfg = {"listen": [f"127.0.0.1:{ports[0]}"], "admin_listen": f"127.0.0.1:{ports[1]}", "workers": 1}
    cfg.update(extra or {})
    cfg["simulator"] = {"seed": 1, "endpoints": endpoints}
    path = tmp_path / "sim.yaml"
    path.write_text(yaml_dump(cfg) + "\n")
    return path, cfg


def ep(name, port, **kw):
    return endpoint(name, listen=f"127.0.0.1:{port}", **kw)


BAD_CONFIGS = {
    "same-listen": lambda a, b: [ep("a", a), ep("b", a)],
    "duplicate-endpoint-name": lambda a, b: [ep("a", a), ep("a", b)],
    "duplicate-deployment": lambda a, b: [ep("a", a, deployments=[chat_dep("x"), chat_dep("x")])],
    "bad-kind": lambda a, b: [ep("a", a, deployments=[chat_dep("x", kind="images")])],
    "bad-capacity": lambda a, b: [ep("a", a, deployments=[chat_dep("x", capacity="lots")])],
    "bad-flavor": lambda a, b: [ep("a", a, flavor="bedrock")],
    "bad-fault-kind": lambda a, b: [ep("a", a, faults=[{"kind": "explode"}])],
    "bad-probability": lambda a, b: [ep("a", a, faults=[{"kind": "status", "status": 500, "probability": 1.5}])],
    "bad-status": lambda a, b: [ep("a", a, faults=[{"kind": "status", "status": 200}])],
    "unknown-key": lambda a, b: [ep("a", a, colour="blue")],
    "fault-unknown-deployment": lambda a, b: [ep("a", a, faults=[{"kind": "status", "status": 500, "deployment": "nope"}])],
}


@pytest.mark.parametrize("which", sorted(BAD_CONFIGS))
def test_bad_config_refused(tmp_path, which):
    a, b = free_ports(2)
    path, _ = write_cfg(tmp_path, BAD_CONFIGS[which](a, b))
    p = run_sluice(["sim", "--config", str(path)])
    assert p.returncode == 1, (p.returncode, p.stderr)
    assert "sim.yaml" in p.stderr, p.stderr
    c = run_sluice(["check-config", str(path)])
    assert c.returncode == 1, (c.returncode, c.stdout, c.stderr)


def test_endpoint_on_the_admin_address_refused(tmp_path):
    a, b = free_ports(2)
    path, cfg = write_cfg(tmp_path, [ep("a", a)])
    cfg["simulator"]["endpoints"][0]["listen"] = cfg["admin_listen"]
    path.write_text(yaml_dump(cfg) + "\n")
    p = run_sluice(["sim", "--config", str(path)])
    assert p.returncode == 1, (p.returncode, p.stderr)


def test_no_endpoints(tmp_path):
    path, _ = write_cfg(tmp_path, [])
    p = run_sluice(["sim", "--config", str(path)])
    assert p.returncode != 0, p
    assert p.stderr.strip()


def test_port_in_use(tmp_path):
    blocker = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    blocker.bind(("127.0.0.1", 0))
    blocker.listen(1)
    try:
        path, _ = write_cfg(tmp_path, [ep("a", blocker.getsockname()[1])])
        p = run_sluice(["sim", "--config", str(path)])
        assert p.returncode != 0, p
        assert str(blocker.getsockname()[1]) in p.stderr, p.stderr
    finally:
        blocker.close()


def test_check_config_accepts_a_simulator_section(tmp_path):
    a, b = free_ports(2)
    eps = [
        ep("ptu", a, region="eastus", api_keys=["k1", "k2"], deployments=[chat_dep("gpt-4o", capacity="provisioned", tpm=10000)]),
        ep("payg", b, flavor="openai", faults=[{"kind": "status", "status": 503, "probability": "10%", "count": 0, "deployment": "gpt-4o"},
                                               {"kind": "stall_stream", "after": 3, "duration": "10s"}]),
    ]
    path, _ = write_cfg(tmp_path, eps)
    c = run_sluice(["check-config", str(path)])
    assert c.returncode == 0, (c.stdout, c.stderr)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_graceful_shutdown_with_an_open_stream(start_sim, sig):
    """In-flight streams get limits.shutdown_timeout to finish, then the process exits 0."""
    sim = start_sim(endpoints=[endpoint(deployments=[chat_dep("gpt-4o", ttft="100ms", tokens_per_second=20)])], limits={"shutdown_timeout": "1s"})
    out = {}

    def run():
        out["s"] = stream(sim.port(), az("gpt-4o"), {**CHAT, "stream": True, "max_tokens": 200}, timeout=15)

    t = threading.Thread(target=run)
    t.start()
    time.sleep(0.4)
    t0 = time.monotonic()
    sim.proc.send_signal(sig)
    rc = sim.proc.wait(10)
    took = time.monotonic() - t0
    t.join(15)
    assert rc == 0, sim.stderr()
    assert 0.8 <= took < 3, took
    s = out["s"]
    assert s.status == 200 and s.events and not s.done, s  # cut at the deadline, not finished
    assert connect_refused(sim.port())


def test_default_listen_address():
    """No options: 127.0.0.1:8081, control API on 8082 (skipped when they are taken)."""
    for port in (8081, 8082):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            pytest.skip(f"port {port} is in use")
        finally:
            s.close()
    proc = subprocess.Popen([SLUICE_BIN, "sim"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                if call(8082, "GET", "/healthz", key=None, timeout=1).status == 200:
                    break
            except (OSError, AssertionError):
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "not ready"
            time.sleep(0.05)
        r = call(8081, "POST", az("gpt-4o"), {**CHAT, "max_tokens": 3}, timeout=10)
        assert r.status == 200, r
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
            raise
        err = proc.stderr.read().decode(errors="replace")
        proc.stderr.close()
    assert rc == 0, err
    assert not [x for x in err.splitlines() if "AddressSanitizer" in x or "runtime error:" in x or "LeakSanitizer" in x], err

"""The command line: version, help, usage errors, check-config and serve's refusals."""

import os
import re
import textwrap

import pytest

from helpers import free_ports, run_sluice


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(textwrap.dedent(text).lstrip("\n"))
    return str(p)


def problem_lines(path, stderr):
    """Problems printed as FILE:LINE:COL: key.path: message -> list of (line, col, key, msg)."""
    pat = re.compile(r"^" + re.escape(path) + r":(\d+):(\d+): ([^:]+): (.+)$", re.M)
    return [(int(a), int(b), k, m) for a, b, k, m in pat.findall(stderr)]


def valid_config(port, admin):
    return f"""
        listen: ["127.0.0.1:{port}"]
        admin_listen: "127.0.0.1:{admin}"
        workers: 2
        limits:
          max_header_bytes: 16KiB
          max_body_bytes: 16MiB
          header_timeout: 10s
          request_timeout: 60s
          idle_timeout: 75s
          shutdown_timeout: 30s
          max_connections: 10000
        log:
          level: info
          format: json
          access: true
        """


# ---- version and help ----------------------------------------------------------------------


def test_version():
    p = run_sluice(["version"])
    assert p.returncode == 0
    assert re.fullmatch(r"sluice \d+\.\d+\.\d+\S*\n", p.stdout), p.stdout
    assert p.stderr == ""


@pytest.mark.parametrize("args", [["help"], ["--help"], ["-h"]])
def test_help(args):
    p = run_sluice(args)
    assert p.returncode == 0
    assert p.stdout.startswith("usage: sluice"), p.stdout
    for cmd in ("serve", "check-config", "version", "help"):
        assert re.search(rf"^\s+{cmd}\b", p.stdout, re.M), f"{cmd} not listed:\n{p.stdout}"
    assert p.stderr == ""


@pytest.mark.parametrize("cmd", ["serve", "check-config", "version", "config-reference"])
def test_subcommand_help(cmd):
    p = run_sluice([cmd, "--help"])
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith(f"usage: sluice {cmd}"), p.stdout
    assert p.stderr == ""


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["frobnicate"],
        ["--bogus"],
        ["serve", "--bogus"],
        ["serve", "--config"],  # missing value
        ["check-config"],  # missing FILE
        ["check-config", "a.yaml", "b.yaml"],
        ["check-config", "--bogus"],
        ["version", "extra"],
    ],
    ids=lambda a: " ".join(a) or "<none>",
)
def test_usage_errors_exit_2(args, tmp_path):
    p = run_sluice(args, cwd=tmp_path)
    assert p.returncode == 2, (p.returncode, p.stdout, p.stderr)
    assert "usage: sluice" in p.stderr, p.stderr
    assert p.stdout == ""


def test_unknown_command_names_it():
    p = run_sluice(["frobnicate"])
    assert p.returncode == 2
    assert "frobnicate" in p.stderr


# ---- check-config --------------------------------------------------------------------------


def test_check_config_valid(tmp_path):
    port, admin = free_ports(2)
    path = write(tmp_path, "ok.yaml", valid_config(port, admin))
    p = run_sluice(["check-config", path])
    assert p.returncode == 0, p.stderr
    assert p.stdout == f"{path}: ok\n"
    assert p.stderr == ""


def test_check_config_minimal_valid(tmp_path):
    """Only what the tests' fixture writes; everything else defaulted."""
    port, admin = free_ports(2)
    path = write(
        tmp_path,
        "min.yaml",
        f"""
        listen: ["127.0.0.1:{port}"]
        admin_listen: "127.0.0.1:{admin}"
        """,
    )
    p = run_sluice(["check-config", path])
    assert p.returncode == 0, p.stderr
    assert p.stdout == f"{path}: ok\n"


def test_check_config_reports_every_problem_with_its_line(tmp_path):
    path = write(
        tmp_path,
        "bad.yaml",
        """
        listen: ["127.0.0.1:18080"]
        admin_listen: "127.0.0.1:18081"
        workers: lots
        limits:
          max_body_bytes: 16MiB
          header_timeout: 10
        log:
          levle: info
        """,
    )
    p = run_sluice(["check-config", path])
    assert p.returncode == 1, (p.stdout, p.stderr)
    assert "ok" not in p.stdout
    probs = problem_lines(path, p.stderr)
    by_line = {line: (col, key, msg) for line, col, key, msg in probs}
    assert sorted(by_line) == [3, 6, 8], p.stderr
    # workers: lots  -> the value, column 10
    col, key, msg = by_line[3]
    assert (col, key) == (10, "workers"), p.stderr
    # a duration without a unit
    col, key, msg = by_line[6]
    assert (col, key) == (19, "limits.header_timeout"), p.stderr
    assert re.search(r"unit|ms|\bs\b", msg), msg
    # unknown key with a hint
    col, key, msg = by_line[8]
    assert col == 3, p.stderr
    assert "levle" in key or "levle" in msg, p.stderr
    assert re.search(r"did you mean\W+level\b", msg, re.I), msg


def test_check_config_unknown_top_level_key_did_you_mean(tmp_path):
    path = write(
        tmp_path,
        "typo.yaml",
        """
        listen: ["127.0.0.1:18080"]
        admin_listn: "127.0.0.1:18081"
        """,
    )
    p = run_sluice(["check-config", path])
    assert p.returncode == 1
    probs = problem_lines(path, p.stderr)
    assert len(probs) == 1, p.stderr
    line, col, key, msg = probs[0]
    assert (line, col) == (2, 1), p.stderr
    assert re.search(r"did you mean\W+admin_listen\b", msg, re.I), msg


def test_check_config_bad_size_and_enum(tmp_path):
    path = write(
        tmp_path,
        "bad2.yaml",
        """
        listen: ["127.0.0.1:18080"]
        admin_listen: "127.0.0.1:18081"
        limits:
          max_header_bytes: 16 furlongs
        log:
          format: xml
        """,
    )
    p = run_sluice(["check-config", path])
    assert p.returncode == 1
    probs = problem_lines(path, p.stderr)
    assert [(l, k) for l, c, k, m in probs] == [
        (4, "limits.max_header_bytes"),
        (6, "log.format"),
    ], p.stderr
    fmt_msg = probs[1][3]
    assert "json" in fmt_msg and "text" in fmt_msg, fmt_msg  # says what is allowed


def test_check_config_env_interpolation_unset(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "SLUICE_IT_UNSET_PORT"}
    path = write(
        tmp_path,
        "env.yaml",
        """
        listen: ["127.0.0.1:18080"]
        admin_listen: "127.0.0.1:${SLUICE_IT_UNSET_PORT}"
        """,
    )
    p = run_sluice(["check-config", path], env=env)
    assert p.returncode == 1, p.stdout
    probs = problem_lines(path, p.stderr)
    assert len(probs) == 1, p.stderr
    line, col, key, msg = probs[0]
    assert (line, key) == (2, "admin_listen"), p.stderr
    assert "SLUICE_IT_UNSET_PORT" in msg and "not set" in msg, msg


def test_check_config_env_interpolation_set(tmp_path):
    port, admin = free_ports(2)
    env = dict(os.environ, SLUICE_IT_ADMIN_PORT=str(admin))
    path = write(
        tmp_path,
        "env.yaml",
        f"""
        listen: ["127.0.0.1:{port}"]
        admin_listen: "127.0.0.1:${{SLUICE_IT_ADMIN_PORT}}"
        """,
    )
    p = run_sluice(["check-config", path], env=env)
    assert p.returncode == 0, p.stderr
    assert p.stdout == f"{path}: ok\n"


def test_check_config_missing_file(tmp_path):
    path = str(tmp_path / "nope.yaml")
    p = run_sluice(["check-config", path])
    assert p.returncode == 1
    assert path in p.stderr
    assert p.stdout == ""


def test_check_config_yaml_syntax_error(tmp_path):
    path = write(tmp_path, "syntax.yaml", 'listen: ["127.0.0.1:1"\nadmin_listen: [\n')
    p = run_sluice(["check-config", path])
    assert p.returncode == 1
    assert re.search(r"^" + re.escape(path) + r":\d+:\d+: ", p.stderr, re.M), p.stderr


@pytest.mark.parametrize(
    "listen, admin",
    [("127.0.0.1:{p}", "127.0.0.1:{p}"), ("0.0.0.0:{p}", "127.0.0.1:{p}")],
    ids=["same", "wildcard"],
)
def test_check_config_admin_collides_with_listen(tmp_path, listen, admin):
    (p_,) = free_ports(1)
    path = write(
        tmp_path,
        "collide.yaml",
        f"""
        listen: ["{listen.format(p=p_)}"]
        admin_listen: "{admin.format(p=p_)}"
        """,
    )
    p = run_sluice(["check-config", path])
    assert p.returncode == 1, p.stdout
    probs = problem_lines(path, p.stderr)
    assert len(probs) == 1, p.stderr
    line, col, key, msg = probs[0]
    assert (line, key) == (2, "admin_listen"), p.stderr


def test_serve_refuses_admin_colliding_with_listen(tmp_path):
    (p_,) = free_ports(1)
    path = write(
        tmp_path,
        "collide.yaml",
        f"""
        listen: ["127.0.0.1:{p_}"]
        admin_listen: "127.0.0.1:{p_}"
        """,
    )
    p = run_sluice(["serve", "--config", path], timeout=10)
    assert p.returncode == 1, p.stderr
    assert re.search(r"^" + re.escape(path) + r":2:\d+: admin_listen: ", p.stderr, re.M), p.stderr


def test_serve_refuses_invalid_config(tmp_path):
    path = write(tmp_path, "bad.yaml", 'listen: ["127.0.0.1:1"]\nworkers: many\n')
    p = run_sluice(["serve", "--config", path], timeout=10)
    assert p.returncode == 1
    assert re.search(r"^" + re.escape(path) + r":2:\d+: workers: ", p.stderr, re.M), p.stderr

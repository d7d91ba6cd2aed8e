"""JWT client identities (issue 7, item 1): bearer tokens from configured issuers (RS256 by a
JWKS file, ES256 by a PEM key, HS256 by a shared secret) identify clients; every invalid token
is answered 401, Azure-shaped, saying which check failed (never repeating the token), and
reaches no backend; API keys keep working beside tokens; a JWKS with two keys accepts both
(rotation), and after the old key is removed and the configuration reloaded (SIGHUP) its
tokens are refused.

Tokens are made with PyJWT and keys with cryptography (Debian's python3-jwt and
python3-cryptography), except where a test needs a token no library would sign."""

import base64
import hashlib
import hmac
import json
import signal
import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from proxytools import *  # noqa: F401,F403
from proxytools import CLIENT_KEY, assert_gw_error, chat_body, hash_key
from simtools import az

ISS_RSA = "https://login.example/rsa/v2.0"
ISS_EC = "https://login.example/ec/v2.0"
ISS_HS = "https://login.example/hs/v2.0"
AUD = "api://sluice"
HS_SECRET = "jwt-test-secret-0123456789abcdef0123456789"

RSA_OLD = rsa.generate_private_key(public_exponent=65537, key_size=2048)
RSA_NEW = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())


def b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def jwk(key, kid):
    d = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    d.update({"kid": kid, "use": "sig", "alg": "RS256"})
    return d


def write_jwks(path, *kids_keys):
    path.write_text(json.dumps({"keys": [jwk(k, kid) for kid, k in kids_keys]}))


def pem_public(key):
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def claims(iss=ISS_RSA, aud=AUD, exp_in=600, **kw):
    now = int(time.time())
    c = {"iss": iss, "aud": aud, "iat": now, "exp": now + exp_in}
    c.update(kw)
    return {k: v for k, v in c.items() if v is not None}


def rs256(kid="old", key=RSA_OLD, **kw):
    return jwt.encode(claims(**{"azp": "app-rsa", **kw}), key, algorithm="RS256", headers={"kid": kid})


def es256(**kw):
    return jwt.encode(claims(**{"iss": ISS_EC, "oid": "app-ec", **kw}), EC_KEY, algorithm="ES256")


def hs256(**kw):
    return jwt.encode(claims(**{"iss": ISS_HS, "appid": "app-hs", **kw}), HS_SECRET, algorithm="HS256")


def hand_made(header, payload, key=None):
    """A token signed here with HMAC-SHA256 under key (bytes), or unsigned; for the tokens PyJWT
    rightly refuses to make (alg none, HS256 keyed with a public key)."""
    signing_input = b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(payload).encode())
    sig = b64url(hmac.new(key, signing_input.encode(), hashlib.sha256).digest()) if key else ""
    return signing_input + "." + sig


def jwt_config(tmp_path):
    """(gateway overrides, clients) with the three issuers; the JWKS holds keys old and new."""
    jwks = tmp_path / "jwks.json"
    write_jwks(jwks, ("old", RSA_OLD), ("new", RSA_NEW))
    ec_pem = tmp_path / "ec.pem"
    ec_pem.write_bytes(pem_public(EC_KEY))
    issuers = [
        {"name": "rsa", "issuer": ISS_RSA, "audiences": [AUD], "jwks_file": str(jwks), "algorithms": ["RS256"]},
        {"name": "ec", "issuer": ISS_EC, "audiences": [AUD, "api://other"], "public_key_file": str(ec_pem), "claim": "oid"},
        {"name": "hs", "issuer": ISS_HS, "audiences": [AUD], "secret": HS_SECRET, "claim": "appid", "leeway": "5s"},
    ]
    clients = [
        {"name": "app1", "keys": [hash_key(CLIENT_KEY)]},
        {"name": "jwt-rsa", "jwt_issuer": "rsa", "jwt_ids": ["app-rsa"]},
        {"name": "jwt-ec", "jwt_issuer": "ec", "jwt_ids": ["app-ec"]},
        {"name": "jwt-hs", "jwt_issuer": "hs", "jwt_ids": ["app-hs", "app-hs-2"]},
    ]
    # Room for the oversized token to reach auth (the head limit would answer 431 first).
    overrides = {"jwt_issuers": issuers, "limits": {"max_header_bytes": "64KiB"}}
    return overrides, clients, jwks


@pytest.fixture(scope="module")
def jwt_env(tmp_path_factory):
    """A gateway with the three issuers in front of a simulator, shared by the module."""
    from proxytools import _start_env, _stop_and_check

    workdir = tmp_path_factory.mktemp("jwt")
    overrides, clients, _ = jwt_config(workdir)
    procs = []
    try:
        env = _start_env(workdir, "jwt", procs, gw=overrides, clients=clients)
    except BaseException as e:
        problems = _stop_and_check(procs)
        raise AssertionError(f"could not start the JWT env: {e}\n" + "\n".join(problems)) from None
    yield env
    problems = _stop_and_check(procs)
    if problems:
        pytest.fail("\n\n".join(problems), pytrace=False)


@pytest.fixture
def env(jwt_env):
    assert jwt_env.gw.alive(), f"the gateway died:\n{jwt_env.gw.stderr()[-4000:]}"
    jwt_env.sim.reset()
    jwt_env.mark()
    yield jwt_env
    assert jwt_env.gw.alive(), f"the gateway died during the test:\n{jwt_env.gw.stderr()[-4000:]}"


def bearer(env, token, path=None):
    return env.call("POST", path or az("gpt-4o"), chat_body(), headers={"Authorization": f"Bearer {token}"}, key=None)


def assert_refused(env, r, reason, token):
    """401, Azure-shaped, the reason in the message, the token nowhere, nothing upstream."""
    err = assert_gw_error(r, 401)
    assert reason in err["message"], err
    text = r.raw.decode("latin-1")
    for part in token.split("."):
        if len(part) > 8:
            assert part not in text, f"the response repeats the token: {r!r}"
    assert env.upstream_requests() == 0


@pytest.mark.parametrize("make", [rs256, es256, hs256], ids=["RS256-jwks", "ES256-pem", "HS256-secret"])
def test_valid_token_is_served(env, make):
    r = bearer(env, make())
    assert r.status == 200, r
    assert r.json()["choices"], r
    assert env.upstream_requests() == 1


def test_valid_token_on_every_surface(env):
    t = hs256(appid="app-hs-2")
    assert bearer(env, t).status == 200
    assert bearer(env, t, "/openai/v1/chat/completions").status in (200, 400)  # body has no model
    r = env.call("POST", "/v1/chat/completions", chat_body(model="gpt-4o"), headers={"Authorization": f"Bearer {t}"}, key=None)
    assert r.status == 200, r
    r = env.call("GET", "/v1/models", headers={"Authorization": f"Bearer {t}"}, key=None)
    assert r.status == 200, r


def test_api_keys_still_work(env):
    assert env.call("POST", az("gpt-4o"), chat_body()).status == 200
    assert env.call("POST", az("gpt-4o"), chat_body(), auth="bearer").status == 200
    # A bearer that is not a JWT is a key: the usual 401 when it is not one of ours.
    r = env.call("POST", az("gpt-4o"), chat_body(), headers={"Authorization": "Bearer not-a-key"}, key=None)
    err = assert_gw_error(r, 401)
    assert "key" in err["message"].lower(), err
    assert env.upstream_requests() == 2


def _bad_signature():
    t = rs256()
    head, payload, sig = t.split(".")
    flipped = sig[:10] + ("A" if sig[10] != "A" else "B") + sig[11:]
    return f"{head}.{payload}.{flipped}"


def _rsa_public_pem():
    return pem_public(RSA_OLD)


INVALID = {
    "expired": (lambda: rs256(exp_in=-3600), "the token expired at "),
    "not-yet-valid": (lambda: rs256(nbf=int(time.time()) + 3600), "the token is not valid before "),
    "wrong-audience": (lambda: rs256(aud="api://someone-else"), "audience"),
    "no-audience": (lambda: rs256(aud=None), "no audience"),
    "wrong-issuer": (lambda: rs256(iss="https://evil.example/v2.0"), "issuer (iss) is not accepted"),
    "alg-none": (
        lambda: hand_made({"alg": "none", "typ": "JWT"}, claims(azp="app-rsa")),
        "unsigned tokens are never accepted",
    ),
    # The confusion attack: HS256 keyed with the issuer's public key.
    "hs256-with-rsa-public-key": (
        lambda: hand_made({"alg": "HS256", "typ": "JWT", "kid": "old"}, claims(azp="app-rsa"), _rsa_public_pem()),
        "HS256",
    ),
    "rs256-for-hs-issuer": (lambda: jwt.encode(claims(iss=ISS_HS, appid="app-hs"), RSA_OLD, algorithm="RS256"), "RS256"),
    "es256-for-rsa-only-issuer": (
        lambda: jwt.encode(claims(azp="app-rsa"), EC_KEY, algorithm="ES256", headers={"kid": "old"}),
        "ES256",
    ),
    "bad-signature": (_bad_signature, "signature is not valid"),
    "wrong-secret": (
        lambda: jwt.encode(claims(iss=ISS_HS, appid="app-hs"), HS_SECRET + "x", algorithm="HS256"),
        "signature is not valid",
    ),
    "unknown-kid": (lambda: rs256(kid="retired-long-ago"), "key id (kid)"),
    "missing-exp": (
        lambda: jwt.encode({"iss": ISS_RSA, "aud": AUD, "azp": "app-rsa"}, RSA_OLD, algorithm="RS256", headers={"kid": "old"}),
        "expiry",
    ),
    "unknown-client": (lambda: rs256(azp="app-nobody"), "the token's azp names no client of this gateway"),
    "no-client-claim": (lambda: hs256(appid=None), "appid"),
    "malformed-base64": (lambda: "eyJhbGciOiJIUzI1NiJ9.e30=.c2ln", "malformed"),
    "malformed-json": (lambda: b64url(b'{"alg":"HS256"') + "." + b64url(b"{}") + ".c2ln", "not a JSON object"),
    "huge": (lambda: hs256(pad="x" * 20000), "too large"),
}


@pytest.mark.parametrize("case", list(INVALID), ids=list(INVALID))
def test_invalid_token_is_401(env, case):
    make, reason = INVALID[case]
    token = make()
    assert_refused(env, bearer(env, token), reason, token)


def test_no_credential_is_401(env):
    r = env.call("POST", az("gpt-4o"), chat_body(), key=None)
    assert_gw_error(r, 401)
    assert env.upstream_requests() == 0


def test_key_rotation_and_reload(start_proxy, tmp_path):
    overrides, clients, jwks = jwt_config(tmp_path)
    p = start_proxy(gw=overrides, clients=clients)
    old, new = rs256(kid="old", key=RSA_OLD), rs256(kid="new", key=RSA_NEW)
    # Both keys of the set are valid at once.
    for t in (old, new):
        r = bearer(p, t)
        assert r.status == 200, r
    # The issuer retires the old key: the set is rewritten, the configuration reloaded.
    write_jwks(jwks, ("new", RSA_NEW))
    p.gw.config_path.write_text(p.gw.config_yaml() + "\n")
    before = p.gw.stderr().count("reloaded")
    p.gw.signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while p.gw.stderr().count("reloaded") <= before:
        assert "reload of" not in p.gw.stderr()[-2000:], p.gw.stderr()[-4000:]
        assert time.monotonic() < deadline, f"no reload within 10 s:\n{p.gw.stderr()[-4000:]}"
        time.sleep(0.05)
    p.sim.reset()
    # Fresh tokens (so that none is refused for its age): the old key's are refused now.
    old, new = rs256(kid="old", key=RSA_OLD), rs256(kid="new", key=RSA_NEW)
    assert_refused(p, bearer(p, old), "key id (kid)", old)
    r = bearer(p, new)
    assert r.status == 200, r
    # A token signed by the old key but naming the new one fails on its signature.
    forged = rs256(kid="new", key=RSA_OLD)
    r = bearer(p, forged)
    err = assert_gw_error(r, 401)
    assert "signature" in err["message"], err

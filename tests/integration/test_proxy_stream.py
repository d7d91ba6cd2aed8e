"""Streaming through the proxy (C2): server-sent events pass through untouched and as they
arrive, never buffered whole; [DONE] at the end; the usage chunk with include_usage."""

import json
import re
import threading

import pytest

from proxytools import *  # noqa: F401,F403
from proxytools import BACKEND_KEY, CLIENT_KEY, MARKER, chat_body
from helpers import Conn
from simtools import _request_bytes, az, stream

IDS_RE = re.compile(rb'"(id|created)":("[^"]*"|\d+)')


def normalised(body):
    """An SSE body with ids and timestamps blanked (they differ between two requests)."""
    return IDS_RE.sub(rb'"\1":_', body)


def without_usage_event(body):
    """An SSE body (LF-framed) without its usage chunk (choices empty, a usage object)."""
    kept = []
    for ev in body.split(b"\n\n"):
        if ev.startswith(b"data: {"):
            d = json.loads(ev[6:])
            if d.get("choices") == [] and isinstance(d.get("usage"), dict):
                continue
        kept.append(ev)
    return b"\n\n".join(kept)


def check_well_formed(s):
    assert s.status == 200, s
    assert s.header("content-type") == "text/event-stream; charset=utf-8", s.headers
    assert s.done, f"no [DONE]: {s}"
    assert s.terminated, f"the chunked body did not end properly: {s}"
    assert s.events[-1][1] == "[DONE]"
    assert not s.after_done, s.after_done
    assert s.partial.strip() == b"", s.partial


@pytest.mark.parametrize("include_usage", [True, False], ids=["usage", "no-usage"])
def test_azure_stream_is_untouched(proxy, include_usage):
    body = chat_body(max_tokens=30, stream=True)
    if include_usage:
        body["stream_options"] = {"include_usage": True}
    s = proxy.stream(az("gpt-4o"), body, keep_reading=0.2)
    check_well_formed(s)
    assert s.header("x-sluice-backend") == "aoai-gpt-4o"
    chunks = s.chunks()
    assert chunks[0]["choices"] == [] and chunks[0]["prompt_filter_results"], chunks[0]
    if include_usage:
        u = chunks[-1]
        assert u["choices"] == [] and u["usage"]["completion_tokens"] > 0, u
        assert u["usage"]["total_tokens"] == u["usage"]["prompt_tokens"] + u["usage"]["completion_tokens"]
    else:
        assert all(not c.get("usage") for c in chunks), chunks
    # byte for byte what the simulator sends when asked directly (ids and times aside); sluice
    # asks for the usage chunk of every stream, and a client that did not ask for it gets the
    # stream without that one event
    d = stream(proxy.sim_port(), az("gpt-4o"), dict(body, stream_options={"include_usage": True}), key=BACKEND_KEY)
    check_well_formed(d)
    want = d.body if include_usage else without_usage_event(d.body)
    assert want != d.body or include_usage
    assert normalised(s.body) == normalised(want)
    st = proxy.dep("gpt-4o")
    assert st["streams"] == {"started": 2, "completed": 2, "cut": 0}, st


@pytest.mark.parametrize("prefix", ["/openai/v1", "/v1"])
def test_v1_stream_with_usage(proxy, prefix):
    body = chat_body(model="gpt-4o-mini", max_tokens=20, stream=True, stream_options={"include_usage": True})
    s = proxy.stream(f"{prefix}/chat/completions", body)
    check_well_formed(s)
    last = s.chunks()[-1]
    assert last["choices"] == [] and 0 < last["usage"]["completion_tokens"] <= 20, last
    assert all(c["model"] == "gpt-4o-mini-2024-07-18" for c in s.chunks()[1:]), s.chunks()
    assert s.content()


def test_completions_stream(proxy):
    s = proxy.stream(az("gpt-35-turbo-instruct", "completions"), {"prompt": MARKER, "max_tokens": 5, "stream": True})
    check_well_formed(s)
    assert s.content()


def test_responses_stream(proxy):
    s = proxy.stream("/openai/v1/responses", {"model": "gpt-4o", "input": MARKER, "stream": True, "max_output_tokens": 500})
    assert s.status == 200 and s.terminated, s
    kinds = [json.loads(t)["type"] for _, t in s.events]
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed", kinds


def test_first_event_arrives_long_before_the_last(proxy):
    # gpt-4o-slow: first token after 50 ms, then 20 tokens per second: 24 tokens take ~1.2 s
    body = chat_body(max_tokens=24, stream=True, stream_options={"include_usage": True})
    s = proxy.stream(az("slow"), body, timeout=15)
    check_well_formed(s)
    times = [t for t, _ in s.events]
    total = times[-1]
    assert total > 0.9, f"the stream took {total:.3f}s; the simulator should take ~1.2s"
    content = [t for t, text in s.events if text != "[DONE]" and json.loads(text).get("choices")]
    assert content[0] < 0.5 * total, f"first content event at {content[0]:.3f}s of {total:.3f}s: buffered"
    # events arrive over time, not in a burst: most of them at distinct moments
    assert s.t_head is not None and s.t_head < 0.5 * total, s.t_head
    distinct = len({round(t, 3) for t in content})
    assert distinct >= 15, f"{len(content)} content events arrived at only {distinct} distinct times"
    gaps = [b - a for a, b in zip(content, content[1:])]
    assert max(gaps) < 0.5, f"a gap of {max(gaps):.3f}s between two events: batching?"


def test_head_arrives_before_first_token(proxy):
    # sluice must not wait for a body byte to send the head on: the simulator sends the head at
    # once and the first token after ttft; here ttft is 50 ms and the whole stream ~1 s
    s = proxy.stream(az("slow"), chat_body(max_tokens=20, stream=True), timeout=15)
    check_well_formed(s)
    assert s.t_head < s.events[-1][0] * 0.5, (s.t_head, s.events[-1][0])


def test_many_streams_at_once(proxy):
    out = [None] * 12

    def run(i):
        out[i] = proxy.stream(az("gpt-4o"), chat_body(f"stream {i}", max_tokens=40, stream=True), timeout=20)

    ts = [threading.Thread(target=run, args=(i,)) for i in range(len(out))]
    for t in ts:
        t.start()
    for t in ts:
        t.join(30)
    for s in out:
        check_well_formed(s)
    st = proxy.dep("gpt-4o")
    assert st["streams"] == {"started": 12, "completed": 12, "cut": 0}, st


def test_keep_alive_after_a_stream(proxy):
    # a stream ends properly, so the client connection can carry the next request
    hs = {"api-key": CLIENT_KEY}
    with Conn(proxy.port, 10) as c:
        c.send(_request_bytes("POST", az("gpt-4o"), chat_body(stream=True), hs, None, keep_alive=True))
        _, r1 = c.read_final()
        assert r1.status == 200 and r1.body.endswith(b"data: [DONE]\n\n"), r1
        assert not r1.closes
        c.send(_request_bytes("POST", az("gpt-4o"), chat_body(), hs, None, keep_alive=True))
        _, r2 = c.read_final()
        assert r2.status == 200 and r2.json()["object"] == "chat.completion", r2


def test_two_workers_serve_streams_and_requests_together(start_proxy):
    p = start_proxy(gw={"workers": 2})
    out = {}

    def run(i):
        if i % 2:
            out[i] = p.stream(az("gpt-4o"), chat_body(f"w {i}", max_tokens=30, stream=True), timeout=20)
        else:
            out[i] = p.call("POST", az("gpt-4o-mini"), chat_body(f"w {i}"))

    ts = [threading.Thread(target=run, args=(i,)) for i in range(16)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(30)
    for i, r in sorted(out.items()):
        if i % 2:
            check_well_formed(r)
        else:
            assert r.status == 200 and r.json()["model"] == "gpt-4o-mini-2024-07-18", r
    assert len(out) == 16
    assert p.dep("gpt-4o")["streams"] == {"started": 8, "completed": 8, "cut": 0}
    assert p.dep("gpt-4o-mini")["requests"] == 8

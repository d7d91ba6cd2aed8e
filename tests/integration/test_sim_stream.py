"""`sluice sim`: server-sent event streams exactly like Azure's, and their timing
(time to first token, tokens per second, driven by timers rather than by sleeping)."""

import json
import threading

import pytest

from simtools import *  # noqa: F401,F403
from simtools import CHAT, az, call, chat_dep, completions_dep, endpoint, stream

SCHAT = {**CHAT, "stream": True, "max_tokens": 30}


def content_chunks(s):
    """The chunks that carry choices (not the prompt-filter chunk nor the usage chunk)."""
    return [c for c in s.chunks() if c.get("choices")]


def check_well_formed(s):
    assert s.status == 200, s
    assert (s.header("content-type") or "").split(";")[0] == "text/event-stream", s
    assert s.done, f"no [DONE]: {s}"
    assert s.terminated, f"the chunked body did not end properly: {s}"
    assert s.events[-1][1] == "[DONE]"
    assert not s.after_done, f"bytes after [DONE]: {s.after_done}"
    assert s.partial.strip() == b"", s.partial


def test_azure_stream_shape(start_sim):
    sim = start_sim()
    s = stream(sim.port(), az("gpt-4o"), {**SCHAT, "stream_options": {"include_usage": True}}, keep_reading=0.2)
    check_well_formed(s)
    assert s.header("x-request-id") and s.header("apim-request-id"), s.headers
    assert s.header("x-ms-region") == "eastus"
    chunks = s.chunks()
    # first: the prompt filter results, with no choices
    first = chunks[0]
    assert first["choices"] == [], first
    assert isinstance(first["prompt_filter_results"], list) and first["prompt_filter_results"], first
    assert first["prompt_filter_results"][0]["prompt_index"] == 0
    # then content chunks, then a finish chunk, then the usage chunk
    body = chunks[1:]
    usage_chunk = body[-1]
    assert usage_chunk["choices"] == [], usage_chunk
    u = usage_chunk["usage"]
    assert u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"] and u["prompt_tokens"] > 0, u
    content = body[:-1]
    assert len(content) >= 2, chunks
    ids = {c["id"] for c in content}
    assert len(ids) == 1 and next(iter(ids)).startswith("chatcmpl-"), ids
    for c in content:
        assert c["object"] == "chat.completion.chunk", c
        assert c["model"] == "gpt-4o-2024-08-06", c
        assert isinstance(c["created"], int)
        assert len(c["choices"]) == 1 and c["choices"][0]["index"] == 0
        assert not c.get("usage"), c
    finish = content[-1]["choices"][0]
    assert finish["finish_reason"] in ("stop", "length"), finish
    assert not (finish.get("delta") or {}).get("content"), finish
    for c in content[:-1]:
        assert c["choices"][0]["finish_reason"] is None, c
    assert content[0]["choices"][0]["delta"].get("role") == "assistant"
    text = s.content()
    assert text, chunks
    assert u["completion_tokens"] <= 30


def test_stream_matches_usage_of_non_stream(start_sim):
    sim = start_sim()
    ns = call(sim.port(), "POST", az("gpt-4o"), {**CHAT, "max_tokens": 30}).json()
    s = stream(sim.port(), az("gpt-4o"), {**SCHAT, "stream_options": {"include_usage": True}})
    check_well_formed(s)
    u = s.chunks()[-1]["usage"]
    # docs/simulator.md: the answer depends on the seed, the deployment, the messages and the
    # body's seed only, so streamed or not, it is the same text and usage
    assert u == ns["usage"]
    assert s.content() == ns["choices"][0]["message"]["content"]
    # the same streaming request twice: the same text and usage
    s2 = stream(sim.port(), az("gpt-4o"), {**SCHAT, "stream_options": {"include_usage": True}})
    assert s2.content() == s.content()
    assert s2.chunks()[-1]["usage"] == u


def test_stream_without_include_usage(start_sim):
    sim = start_sim()
    s = stream(sim.port(), az("gpt-4o"), SCHAT)
    check_well_formed(s)
    assert all(not c.get("usage") for c in s.chunks()), s.chunks()
    assert content_chunks(s)[-1]["choices"][0]["finish_reason"] in ("stop", "length")


def test_stream_max_tokens_length(start_sim):
    sim = start_sim()
    s = stream(sim.port(), az("gpt-4o"), {**SCHAT, "max_tokens": 3, "stream_options": {"include_usage": True}})
    check_well_formed(s)
    assert content_chunks(s)[-1]["choices"][0]["finish_reason"] == "length"
    assert 0 < s.chunks()[-1]["usage"]["completion_tokens"] <= 3


def test_stream_n_choices(start_sim):
    sim = start_sim()
    s = stream(sim.port(), az("gpt-4o"), {**SCHAT, "n": 2, "max_tokens": 5})
    check_well_formed(s)
    idx = {ch["index"] for c in content_chunks(s) for ch in c["choices"]}
    assert idx == {0, 1}, idx
    finishes = [ch for c in content_chunks(s) for ch in c["choices"] if ch.get("finish_reason")]
    assert sorted(ch["index"] for ch in finishes) == [0, 1], finishes


def test_v1_stream_has_no_prompt_filter_chunk_on_openai_flavour(start_sim):
    sim = start_sim(endpoints=[endpoint("oai", flavor="openai")])
    s = stream(sim.port(), "/v1/chat/completions", {**SCHAT, "model": "gpt-4o", "stream_options": {"include_usage": True}})
    check_well_formed(s)
    first = s.chunks()[0]
    assert first["choices"], f"an OpenAI server starts with content, not a filter chunk: {first}"
    assert "prompt_filter_results" not in first
    assert s.chunks()[-1]["choices"] == [] and s.chunks()[-1]["usage"]


@pytest.mark.parametrize("path", ["/openai/v1/chat/completions", "/v1/chat/completions"])
def test_v1_stream_on_azure_endpoint(start_sim, path):
    sim = start_sim()
    s = stream(sim.port(), path, {**SCHAT, "model": "gpt-4o", "stream_options": {"include_usage": True}})
    check_well_formed(s)
    assert s.content()
    assert s.chunks()[-1]["usage"]["completion_tokens"] > 0


def test_completions_stream(start_sim):
    sim = start_sim()
    s = stream(sim.port(), az("gpt-35-turbo-instruct", "completions"), {"prompt": "Once", "max_tokens": 5, "stream": True})
    check_well_formed(s)
    cs = content_chunks(s)
    assert cs and all(c["object"] == "text_completion" for c in cs), cs
    assert s.content()
    assert cs[-1]["choices"][0]["finish_reason"] == "length"


# ---- timing ----------------------------------------------------------------------------------


def slow_sim(start_sim, ttft="300ms", tps=50):
    return start_sim(
        endpoints=[endpoint(deployments=[chat_dep("gpt-4o", ttft=ttft, tokens_per_second=tps, jitter_percent=0, default_max_tokens=256)])]
    )


def test_ttft_and_tokens_per_second(start_sim):
    sim = slow_sim(start_sim, "300ms", 50)
    s = stream(sim.port(), az("gpt-4o"), {**SCHAT, "max_tokens": 10, "stream_options": {"include_usage": True}})
    check_well_formed(s)
    firsts = [t for (t, d) in s.events if d != "[DONE]" and json.loads(d).get("choices") and (json.loads(d)["choices"][0].get("delta") or {}).get("content")]
    assert firsts, s
    # the prompt-filter chunk may come at once; the first token only after ttft
    assert 0.27 <= firsts[0] <= 1.5, f"first token after {firsts[0]:.3f}s, ttft 300ms"
    n = s.chunks()[-1]["usage"]["completion_tokens"]
    assert n >= 5, n
    # n tokens at 50/s: at least (n - 1) / 50 s between the first and the last token
    assert firsts[-1] - firsts[0] >= 0.9 * (n - 1) / 50, (firsts, n)
    assert s.elapsed < 0.3 + n / 50 + 1.5, s.elapsed


def test_non_streaming_latency_includes_generation(start_sim):
    sim = slow_sim(start_sim, "200ms", 100)
    r = call(sim.port(), "POST", az("gpt-4o"), {**CHAT, "max_tokens": 10})
    assert r.status == 200
    assert r.elapsed >= 0.18, r.elapsed
    assert r.elapsed < 2.0, r.elapsed


def test_concurrent_streams_are_timer_driven(start_sim):
    """40 streams with ttft 400ms on one worker all finish in about 400ms, not 40 x 400ms."""
    sim = slow_sim(start_sim, "400ms", 200)
    results = [None] * 40

    def run(i):
        results[i] = stream(sim.port(), az("gpt-4o"), {**SCHAT, "max_tokens": 5}, timeout=15)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(results))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    for s in results:
        check_well_formed(s)
        assert s.elapsed >= 0.38, s.elapsed
    assert max(s.elapsed for s in results) < 3.0, sorted(s.elapsed for s in results)


def test_jitter_varies_timing_within_bounds(start_sim):
    sim = start_sim(endpoints=[endpoint(deployments=[chat_dep("gpt-4o", ttft="200ms", tokens_per_second=1000, jitter_percent=50)])])
    times = []
    for _ in range(6):
        s = stream(sim.port(), az("gpt-4o"), {**SCHAT, "max_tokens": 2})
        check_well_formed(s)
        times.append(s.elapsed)
    assert min(times) >= 0.09, times  # 200ms - 50%, minus nothing
    assert max(times) <= 0.3 + 1.0, times
    assert max(times) - min(times) > 0.005, f"no jitter at all: {times}"


# ---- responses ---------------------------------------------------------------------------------

RESPONSE_EVENTS_START = ["response.created", "response.in_progress", "response.output_item.added", "response.content_part.added"]
RESPONSE_EVENTS_END = ["response.output_text.done", "response.content_part.done", "response.output_item.done", "response.completed"]


@pytest.mark.parametrize("path", ["/openai/v1/responses", "/openai/responses?api-version=2025-03-01-preview"])
def test_responses_stream(start_sim, path):
    sim = start_sim()
    s = stream(sim.port(), path, {"model": "gpt-4o", "input": "Stream me a response.", "stream": True, "max_output_tokens": 400}, keep_reading=0.2)
    assert s.status == 200, s
    assert (s.header("content-type") or "").split(";")[0] == "text/event-stream", s
    assert s.terminated and not s.after_done, s
    assert not s.done, "the Responses API ends with response.completed, not [DONE]"
    evs = s.chunks()
    types = [e["type"] for e in evs]
    assert types[:4] == RESPONSE_EVENTS_START, types
    assert types[-4:] == RESPONSE_EVENTS_END, types
    assert set(types[4:-4]) == {"response.output_text.delta"}, types
    assert s.names == types, "each event's `event:` line names its type"
    assert [e["sequence_number"] for e in evs] == list(range(len(evs)))
    text = "".join(e["delta"] for e in evs if e["type"] == "response.output_text.delta")
    assert text and evs[-4]["text"] == text
    final = evs[-1]["response"]
    assert final["status"] == "completed" and final["id"].startswith("resp_")
    assert evs[0]["response"]["status"] == "in_progress" and evs[0]["response"]["id"] == final["id"]
    out = [c for o in final["output"] if o["type"] == "message" for c in o["content"] if c["type"] == "output_text"]
    assert out[0]["text"] == text
    assert final["usage"]["output_tokens"] == len(types) - 8
    # stored: retrievable, and usable as previous_response_id
    base = path.split("?")[0]
    q = "?" + path.split("?")[1] if "?" in path else ""
    g = call(sim.port(), "GET", f"{base}/{final['id']}{q}")
    assert g.status == 200 and g.json()["id"] == final["id"], g


def test_stop_in_stream(start_sim):
    sim = start_sim()
    s = stream(sim.port(), az("gpt-4o"), {**SCHAT, "max_tokens": 60, "stop": [" "]})
    check_well_formed(s)
    assert s.content() and " " not in s.content(), s.content()
    assert content_chunks(s)[-1]["choices"][0]["finish_reason"] == "stop"


# ---- clients that go away or read slowly -------------------------------------------------------


def _raw_stream_request(port, body):
    import socket as _s

    from simtools import _request_bytes

    sock = _s.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(_request_bytes("POST", az("gpt-4o"), body, None, "k"))
    return sock


def test_client_goes_away_mid_stream(start_sim):
    from simtools import st_streams, wait_until

    sim = slow_sim(start_sim, "10ms", 50)
    sock = _raw_stream_request(sim.port(), {**SCHAT, "max_tokens": 100})
    got = b""
    while got.count(b"data: ") < 4:
        got += sock.recv(65536)
    sock.close()
    d = wait_until(lambda: (lambda d: d if st_streams(d, "cut") + st_streams(d, "completed") >= 1 else None)(sim.dep("gpt-4o")), 5, 0.05, "the stream ended")
    assert st_streams(d, "started") == 1 and st_streams(d, "completed") == 0 and st_streams(d, "cut") == 1, d
    # and it is still serving
    check_well_formed(stream(sim.port(), az("gpt-4o"), {**SCHAT, "max_tokens": 3}))


def test_slow_reader_gets_everything(start_sim):
    """Backpressure: a client that does not read for a while still gets a whole, ordered stream."""
    import time as _t

    sim = start_sim()
    body = {**SCHAT, "n": 64, "max_tokens": 150, "stream_options": {"include_usage": True}}
    sock = _raw_stream_request(sim.port(), body)
    _t.sleep(1.0)  # ~3.4 MB pile up: far more than the socket buffers and the server's high mark
    data = b""
    sock.settimeout(10)
    while not data.endswith(b"0\r\n\r\n"):
        d = sock.recv(65536)
        if not d:
            break
        data += d
    sock.close()
    assert data.endswith(b"data: [DONE]\n\n\r\n0\r\n\r\n"), data[-200:]
    ref = stream(sim.port(), az("gpt-4o"), body)
    check_well_formed(ref)
    assert ref.chunks()[-1]["usage"]["completion_tokens"] > 64
    for i in (0, 17, 63):
        assert ref.content(i), i

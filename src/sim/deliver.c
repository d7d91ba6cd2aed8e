/*
 * Delivering an admitted request over time. A request with nothing to wait
 * for is answered at once, synchronously. All others (latency, streams,
 * stall/trickle/cut faults) get one struct reply in the request's arena with
 * one uv_timer on the request's loop: the timer paces the stream from the
 * deployment's ttft_ms and tokens_per_second (with jitter), events are
 * generated one at a time from the seed (a stream holds a plan per choice,
 * never its text), output stops while the connection is congested and
 * resumes on drain, and the client going away stops it. The request is
 * released only after the timer handle has closed, because the handle lives
 * in the arena that sl_http_finish frees.
 */
#include "sim/internal.h"

#include <string.h>

#define LIT SL_SIM_LIT
#define MAX_EVENTS_PER_TICK 64
#define MAX_BYTES_PER_TICK (32 * 1024)
#define TRICKLE_PIECE 16  /* bytes of a non-streamed body per trickle period */
#define CATCH_UP_US 20000 /* a stream this late resumes its pace from now */

enum phase {
    PHASE_PRELUDE, /* Azure's prompt-filter chunk, role chunks, responses' opening events */
    PHASE_TOKENS,
    PHASE_FINISH, /* finish chunks / responses' closing events */
    PHASE_USAGE,
    PHASE_DONE, /* data: [DONE] */
    PHASE_END,
};

enum reply_end {
    END_FINISH, /* complete (or the client went away) */
    END_CUT,    /* close after what was written: a cut body */
};

/* What one choice of a stream has emitted. */
struct choice_state {
    struct sl_sim_gen gen;
    uint32_t emitted;
    uint32_t bytes;
};

/* One delivery in progress. Lives in the request's arena; owns out. */
struct reply {
    uv_timer_t timer;
    struct sl_sim_call *c; /* borrowed: same arena */
    struct sl_buf out;     /* owned: a body, or the events of one tick */
    bool stream;
    bool head_sent;
    bool closing; /* the timer handle is closing: nothing more happens */
    bool gone;    /* the client went away */
    bool waiting_drain;
    bool stalled;   /* the stall fault has been served */
    bool counted;   /* count_end has run */
    bool malformed; /* the malformed_json fault is still to be served */
    enum reply_end end;
    uint64_t due_us;      /* monotonic time of the next paced step */
    uint64_t interval_us; /* between token rounds */
    uint64_t rng;         /* jitter */
    uint64_t events;      /* events written (streams) */
    size_t body_len;      /* bytes of out to send (bodies) */
    size_t off;           /* bytes of out sent (bodies) */
    size_t held;          /* streams: bytes of out sent before a stall; the rest is due */
    enum phase phase;
    uint32_t step;        /* position inside the phase */
    uint32_t next_choice; /* inside a token round */
    uint64_t seq;         /* responses: sequence_number */
    struct choice_state *choices;
    uint64_t streamed_tokens;
};

static uint64_t jittered(struct reply *rp, uint64_t us)
{
    uint64_t j = rp->c->dep->cfg->jitter_percent;
    if (j == 0 || us == 0)
        return us;
    j = SL_MIN(j, 100);
    uint64_t pct = 100 - j + sl_sim_rand_below(&rp->rng, 2 * j + 1);
    return us * pct / 100;
}

static void on_timer(uv_timer_t *t);

static void arm(struct reply *rp, uint64_t delay_us)
{
    uv_timer_start(&rp->timer, on_timer, (delay_us + 999) / 1000, 0);
}

/* Count how the delivery ended, once, before its last bytes go out: a client
 * that has read them may ask for the stats at once. */
static void count_end(struct reply *rp, bool completed)
{
    if (rp->counted)
        return;
    rp->counted = true;
    struct sl_sim_counters *k = sl_sim_counters_of(rp->c);
    if (rp->stream) {
        sl_sim_count(&k->completion_tokens, rp->streamed_tokens);
        sl_sim_count(completed ? &k->streams_completed : &k->streams_cut, 1);
    } else if (completed) {
        sl_sim_count(&k->completion_tokens, rp->c->completion_tokens);
    }
}

static void on_closed(uv_handle_t *h)
{
    struct reply *rp = h->data;
    struct sl_sim_call *c = rp->c;
    count_end(rp, false);
    bool cut = rp->end == END_CUT && !rp->gone;
    sl_buf_dispose(&rp->out);
    /* The arena holding rp goes with the request: nothing of rp after this. */
    if (cut)
        sl_http_abort(c->req, false);
    else
        sl_http_finish(c->req);
}

static void end_reply(struct reply *rp, enum reply_end end)
{
    if (rp->closing)
        return;
    rp->closing = true;
    rp->end = end;
    uv_timer_stop(&rp->timer);
    uv_close((uv_handle_t *)&rp->timer, on_closed);
}

static void on_abort(struct sl_http_request *req, void *data)
{
    struct reply *rp = data;
    rp->gone = true;
    end_reply(rp, END_FINISH);
}

static void on_drain(struct sl_http_request *req, void *data)
{
    struct reply *rp = data;
    if (rp->waiting_drain && !rp->closing) {
        rp->waiting_drain = false;
        arm(rp, 0); /* never re-enter the writer from inside its own flush */
    }
}

/* Write out[from..to); false when the client is gone (the reply is ending). */
static bool write_out(struct reply *rp, size_t from, size_t to)
{
    if (to > from && sl_http_write(rp->c->req, rp->out.base + from, to - from) != SL_OK) {
        rp->gone = true;
        end_reply(rp, END_FINISH);
    }
    return !rp->closing;
}

/* Write a stream tick's events. The buffer is given back between ticks: an
 * open stream keeps no more than its plan and generator state. */
static bool flush(struct reply *rp)
{
    bool ok = write_out(rp, 0, rp->out.len);
    sl_buf_dispose(&rp->out);
    return ok;
}

static void send_head(struct reply *rp)
{
    struct sl_sim_call *c = rp->c;
    struct sl_sim_headers hs;
    sl_sim_headers_build(&hs, c, rp->stream);
    sl_sim_record(c, 200);
    rp->head_sent = true;
    if (sl_http_start_response(c->req, 200, hs.h, hs.n,
                               rp->stream ? SL_HTTP_FRAMING_CHUNKED : SL_HTTP_FRAMING_LENGTH,
                               rp->body_len) != SL_OK) {
        rp->gone = true;
        end_reply(rp, END_FINISH);
    }
}

static void pump_body(struct reply *rp)
{
    const struct sl_sim_fault *f = &rp->c->fault;
    size_t half = rp->body_len / 2;
    switch (f->kind) {
    case SL_SIM_FAULT_TRICKLE: {
        size_t n = SL_MIN((size_t)TRICKLE_PIECE, rp->body_len - rp->off);
        if (rp->off + n == rp->body_len)
            count_end(rp, true);
        if (!write_out(rp, rp->off, rp->off + n))
            return;
        rp->off += n;
        if (rp->off < rp->body_len) {
            arm(rp, f->duration_ms * 1000);
            return;
        }
        break;
    }
    case SL_SIM_FAULT_STALL_STREAM:
        if (!rp->stalled) {
            rp->stalled = true;
            if (!write_out(rp, 0, half))
                return;
            rp->off = half;
            arm(rp, f->duration_ms * 1000);
            return;
        }
        count_end(rp, true);
        if (!write_out(rp, rp->off, rp->body_len))
            return;
        rp->off = rp->body_len;
        break;
    case SL_SIM_FAULT_CUT_STREAM:
        count_end(rp, false);
        if (write_out(rp, 0, half))
            end_reply(rp, END_CUT);
        return;
    default:
        count_end(rp, true);
        if (!write_out(rp, 0, rp->body_len))
            return;
        rp->off = rp->body_len;
        break;
    }
    end_reply(rp, END_FINISH);
}

/* ---- stream events ---- */

static bool any_active(struct reply *rp)
{
    for (size_t i = 0; i < rp->c->n_choices; i++)
        if (rp->choices[i].emitted < rp->c->plans[i].tokens)
            return true;
    return false;
}

/* The next token of choice i, cut where its plan ends. */
static struct sl_str next_token(struct reply *rp, size_t i, char *tok)
{
    struct choice_state *cs = &rp->choices[i];
    size_t n = sl_sim_gen_next(&cs->gen, tok);
    size_t left = rp->c->plans[i].bytes - cs->bytes;
    n = SL_MIN(n, left);
    cs->bytes += (uint32_t)n;
    cs->emitted++;
    rp->streamed_tokens++;
    return (struct sl_str){tok, n};
}

/* An event renderer's result as next_event's: 1 for "appended", or the error. */
static int one(int rc)
{
    return rc ? rc : 1;
}

/* Append the next event to out: 1 when one was appended, 0 at the end, <0 on error. */
static int next_event(struct reply *rp)
{
    struct sl_sim_call *c = rp->c;
    struct sl_buf *b = &rp->out;
    bool responses = c->r.op == SL_SIM_OP_RESPONSES;
    char tok[SL_SIM_TOKEN_MAX];
    for (;;) {
        switch (rp->phase) {
        case PHASE_PRELUDE:
            if (responses) {
                if (rp->step < 4)
                    return one(sl_sim_event_response_start(b, c, rp->step++, rp->seq++));
            } else {
                /* Azure's prompt-filter chunk, then a role chunk per chat choice. */
                uint32_t s = rp->step++;
                if (c->azure && s == 0)
                    return one(sl_sim_event_prompt_filter(b, c));
                size_t i = s - (c->azure ? 1 : 0);
                if (c->r.op == SL_SIM_OP_CHAT && i < c->n_choices)
                    return one(sl_sim_event_role(b, c, i));
            }
            rp->phase = PHASE_TOKENS;
            rp->step = 0;
            continue;
        case PHASE_TOKENS:
            while (rp->next_choice < c->n_choices) {
                size_t i = rp->next_choice++;
                if (rp->choices[i].emitted >= c->plans[i].tokens)
                    continue;
                struct sl_str t = next_token(rp, i, tok);
                if (responses)
                    return one(sl_sim_event_response_delta(b, c, t, rp->seq++));
                return one(sl_sim_event_token(b, c, i, t));
            }
            return 0; /* the round is over: the caller decides when the next one starts */
        case PHASE_FINISH:
            if (responses) {
                /* No [DONE]: response.completed is the last event. */
                int rc = sl_sim_event_response_end(b, c, rp->step++, rp->seq++);
                if (rp->step == 4)
                    rp->phase = PHASE_END;
                return one(rc);
            }
            if (rp->step < c->n_choices)
                return one(sl_sim_event_finish(b, c, rp->step++));
            rp->phase = c->r.include_usage ? PHASE_USAGE : PHASE_DONE;
            continue;
        case PHASE_USAGE:
            rp->phase = PHASE_DONE;
            return one(sl_sim_event_usage(b, c));
        case PHASE_DONE:
            rp->phase = PHASE_END;
            return LIT(b, "data: [DONE]\n\n") ? SL_ENOMEM : 1;
        case PHASE_END:
            return 0;
        }
    }
}

/* Keep "data: " and half of the event's JSON, then end the event: not JSON any more. */
static void break_event(struct sl_buf *b, size_t mark)
{
    size_t len = b->len - mark;
    b->len = mark + SL_MIN(len, (size_t)6 + (len - 6) / 3);
    LIT(b, "\n\n");
}

/*
 * A stall before the first event still sends the response head at once (a
 * gateway then sees a 200 and silence, not silence before the head). The
 * writer sends the head with the first body bytes, so the first event is
 * produced now and its first byte written; the rest waits in out until the
 * stall is over. Returns false when there was no event to start.
 */
static bool stall_first_event(struct reply *rp)
{
    int got = next_event(rp);
    if (got <= 0) {
        sl_buf_dispose(&rp->out);
        return false;
    }
    rp->events++;
    if (rp->phase == PHASE_END)
        count_end(rp, true);
    if (write_out(rp, 0, 1)) {
        rp->held = 1;
        arm(rp, rp->c->fault.duration_ms * 1000);
    }
    return true;
}

static void pump_stream(struct reply *rp)
{
    const struct sl_sim_fault *f = &rp->c->fault;
    uint32_t tick_events = 0;
    if (rp->held) {
        /* The rest of the event a stall interrupted goes first. */
        size_t from = rp->held;
        rp->held = 0;
        if (!write_out(rp, from, rp->out.len))
            return;
    }
    rp->out.len = 0;
    for (;;) {
        if (sl_http_congested(rp->c->req)) {
            rp->waiting_drain = true;
            flush(rp);
            return;
        }
        if (f->kind == SL_SIM_FAULT_STALL_STREAM && !rp->stalled && rp->events == f->after) {
            rp->stalled = true;
            if (rp->events == 0 && stall_first_event(rp))
                return;
            if (flush(rp))
                arm(rp, f->duration_ms * 1000);
            return;
        }
        if (rp->phase == PHASE_TOKENS && rp->next_choice >= rp->c->n_choices) {
            /* A round is over (or none has begun): start the next one when it is due. */
            if (!any_active(rp)) {
                rp->phase = PHASE_FINISH;
                rp->step = 0;
            } else {
                uint64_t now = sl_clock_mono_us();
                if (now < rp->due_us) {
                    if (flush(rp))
                        arm(rp, rp->due_us - now);
                    return;
                }
                /* Timers tick in whole milliseconds: faster paces catch up with a few
                 * rounds per tick. After a stall or backpressure, no burst. */
                if (now - rp->due_us > SL_MAX(CATCH_UP_US, 2 * rp->interval_us))
                    rp->due_us = now;
                rp->due_us += jittered(rp, rp->interval_us);
                rp->next_choice = 0;
            }
        }
        size_t mark = rp->out.len;
        int got = next_event(rp);
        if (got < 0) {
            count_end(rp, false);
            flush(rp);
            end_reply(rp, END_CUT);
            return;
        }
        if (got == 0) {
            if (rp->phase == PHASE_TOKENS)
                continue; /* the round ended: pace the next one above */
            count_end(rp, true);
            if (flush(rp))
                end_reply(rp, END_FINISH);
            return;
        }
        if (f->kind == SL_SIM_FAULT_CUT_STREAM && rp->events == f->after) {
            /* Half an event, then the connection closes: no [DONE] ever comes. */
            rp->out.len = mark + (rp->out.len - mark) / 2;
            count_end(rp, false);
            if (flush(rp))
                end_reply(rp, END_CUT);
            return;
        }
        if (rp->malformed) {
            rp->malformed = false;
            break_event(&rp->out, mark);
        }
        rp->events++;
        if (rp->phase == PHASE_END)
            count_end(rp, true);
        if (f->kind == SL_SIM_FAULT_TRICKLE) {
            if (flush(rp))
                arm(rp, f->duration_ms * 1000);
            return;
        }
        if (++tick_events >= MAX_EVENTS_PER_TICK || rp->out.len >= MAX_BYTES_PER_TICK) {
            if (flush(rp))
                arm(rp, 0);
            return;
        }
    }
}

static void on_timer(uv_timer_t *t)
{
    struct reply *rp = t->data;
    if (rp->closing)
        return;
    if (!rp->head_sent) {
        uint64_t now = sl_clock_mono_us();
        if (now < rp->due_us) {
            arm(rp, rp->due_us - now);
            return;
        }
        send_head(rp);
        if (rp->closing)
            return;
    }
    if (rp->stream)
        pump_stream(rp);
    else
        pump_body(rp);
}

static int render_body(struct sl_buf *b, struct sl_sim_call *c)
{
    switch (c->r.op) {
    case SL_SIM_OP_CHAT:
        return sl_sim_render_chat(b, c);
    case SL_SIM_OP_COMPLETIONS:
        return sl_sim_render_completions(b, c);
    case SL_SIM_OP_EMBEDDINGS:
        return sl_sim_render_embeddings(b, c);
    case SL_SIM_OP_RESPONSES:
        break;
    }
    return sl_sim_render_response(b, c, false);
}

/* Store a finished response for retrieval and previous_response_id. */
static void store_response(struct sl_sim_call *c, struct sl_str body)
{
    if (c->r.op != SL_SIM_OP_RESPONSES || !c->r.store)
        return;
    if (sl_sim_store_put(&c->ep->store, SL_SIM_OBJ_RESPONSE, sl_str_from_cstr(c->id), body,
                         c->prompt_tokens + c->completion_tokens) != SL_OK)
        sl_log_warn("sim %s: could not store response %s", c->ep->cfg->name, c->id);
}

static int setup_stream(struct reply *rp)
{
    struct sl_sim_call *c = rp->c;
    if (sl_sim_plan_choices(c) != SL_OK)
        return SL_ENOMEM;
    rp->choices = sl_arena_alloc(c->req->arena, c->n_choices * sizeof(*rp->choices));
    if (rp->choices == NULL)
        return SL_ENOMEM;
    uint32_t n = c->r.n ? c->r.n : 1;
    for (size_t i = 0; i < c->n_choices; i++) {
        sl_sim_gen_init(&rp->choices[i].gen, sl_sim_choice_seed(c, i / n, i % n));
        rp->choices[i].emitted = 0;
        rp->choices[i].bytes = 0;
    }
    rp->next_choice = (uint32_t)c->n_choices; /* no round open yet */
    uint64_t tps = c->dep->cfg->tokens_per_second;
    rp->interval_us = tps ? 1000000 / tps : 0;
    if (c->r.op == SL_SIM_OP_RESPONSES && c->r.store) {
        /* Stored now, complete: a retrieval during the stream sees the final object. */
        struct sl_buf b;
        sl_buf_init(&b);
        if (sl_sim_render_response(&b, c, false) == SL_OK)
            store_response(c, (struct sl_str){b.base, b.len});
        sl_buf_dispose(&b);
    }
    return SL_OK;
}

void sl_sim_reply_serve(struct sl_sim_call *c)
{
    const struct sl_config_sim_deployment *d = c->dep->cfg;
    struct sl_sim_counters *k = sl_sim_counters_of(c);
    struct reply *rp = sl_arena_alloc(c->req->arena, sizeof(*rp));
    if (rp == NULL) {
        sl_sim_reply_openai_error(c, 500, "The server is out of memory.", "server_error", NULL,
                                  NULL);
        return;
    }
    memset(rp, 0, sizeof(*rp));
    rp->c = c;
    rp->stream = c->r.stream && c->r.op != SL_SIM_OP_EMBEDDINGS;
    rp->rng = sl_sim_random_seed(); /* timings vary; only content is reproducible */
    rp->malformed = c->fault.kind == SL_SIM_FAULT_MALFORMED_JSON;
    sl_buf_init(&rp->out);
    sl_sim_count(&k->prompt_tokens, c->prompt_tokens);

    uint64_t delay_us = jittered(rp, d->ttft_ms * 1000);
    if (c->fault.kind == SL_SIM_FAULT_STALL_HEADERS)
        delay_us += c->fault.duration_ms * 1000;
    if (!rp->stream) {
        if (render_body(&rp->out, c) != SL_OK) {
            sl_buf_dispose(&rp->out);
            sl_sim_reply_openai_error(c, 500, "The server is out of memory.", "server_error", NULL,
                                      NULL);
            return;
        }
        store_response(c, (struct sl_str){rp->out.base, rp->out.len});
        rp->body_len = rp->out.len;
        if (rp->malformed) /* a body cut short, with a Content-Length that matches it */
            rp->body_len = SL_MAX(rp->out.len / 2, (size_t)1);
        /* Without streaming the whole answer is generated before anything is sent. */
        if (c->r.op != SL_SIM_OP_EMBEDDINGS && d->tokens_per_second)
            delay_us += jittered(rp, c->completion_tokens * 1000000 / d->tokens_per_second);
        bool plain =
            c->fault.kind == SL_SIM_FAULT_NONE || c->fault.kind == SL_SIM_FAULT_MALFORMED_JSON;
        if (delay_us < 1000 && plain) {
            /* The fast path: answered now, no timer (timers count whole milliseconds). */
            sl_sim_count(&k->completion_tokens, c->completion_tokens);
            sl_sim_reply_body(c, 200, (struct sl_str){rp->out.base, rp->body_len});
            sl_buf_dispose(&rp->out);
            return;
        }
    } else {
        sl_sim_count(&k->streams_started, 1);
        if (setup_stream(rp) != SL_OK) {
            sl_sim_count(&k->streams_cut, 1);
            sl_sim_reply_openai_error(c, 500, "The server is out of memory.", "server_error", NULL,
                                      NULL);
            return;
        }
    }
    uv_timer_init(sl_http_request_loop(c->req), &rp->timer);
    rp->timer.data = rp;
    sl_http_set_callbacks(c->req, on_drain, on_abort, rp);
    rp->due_us = sl_clock_mono_us() + delay_us;
    arm(rp, delay_us);
}

/*
 * Deterministic English-like answers. A seed gives a natural length and a
 * stream of words grouped into sentences; the answer is regenerated from the
 * seed whenever it is needed (streams never hold more than one token), so a
 * plan (how many tokens, how many bytes) is all that is ever kept.
 */
#include "sim/internal.h"

#include <string.h>

static const char *const words[] = {
    "the",       "a",          "model",   "answer",   "system",      "data",     "request",
    "response",  "token",      "stream",  "endpoint", "deployment",  "quota",    "region",
    "gateway",   "client",     "latency", "capacity", "throughput",  "limit",    "result",
    "question",  "context",    "prompt",  "message",  "value",       "time",     "rate",
    "service",   "network",    "policy",  "backend",  "simulation",  "example",  "detail",
    "process",   "method",     "pattern", "signal",   "sequence",    "record",   "metric",
    "is",        "are",        "was",     "can",      "will",        "should",   "may",
    "does",      "makes",      "keeps",   "shows",    "gives",       "takes",    "needs",
    "sends",     "returns",    "reads",   "writes",   "measures",    "balances", "handles",
    "follows",   "reaches",    "builds",  "and",      "or",          "but",      "so",
    "of",        "to",         "in",      "for",      "with",        "on",       "at",
    "from",      "by",         "about",   "through",  "between",     "after",    "before",
    "under",     "over",       "each",    "every",    "some",        "many",     "few",
    "this",      "that",       "these",   "those",    "its",         "their",    "our",
    "quick",     "simple",     "careful", "steady",   "small",       "large",    "clear",
    "useful",    "reliable",   "stable",  "regional", "provisioned", "shared",   "early",
    "late",      "new",        "old",     "fast",     "slow",        "good",     "better",
    "often",     "usually",    "quietly", "exactly",  "rarely",      "simply",   "now",
    "then",      "here",       "there",   "again",    "together",    "already",  "still",
    "more",      "less",       "most",    "well",     "very",        "also",     "only",
    "sometimes", "eventually",
};

void sl_sim_gen_init(struct sl_sim_gen *g, uint64_t seed)
{
    g->rng = seed;
    g->emitted = 0;
    g->length = SL_SIM_GEN_MIN_TOKENS +
                (uint32_t)sl_sim_rand_below(&g->rng, SL_SIM_GEN_MAX_TOKENS - SL_SIM_GEN_MIN_TOKENS);
    g->sentence_left = 0;
}

size_t sl_sim_gen_next(struct sl_sim_gen *g, char *out)
{
    if (g->emitted >= g->length)
        return 0;
    size_t n = 0;
    bool first_of_sentence = g->sentence_left == 0;
    if (first_of_sentence)
        g->sentence_left = 5 + (uint32_t)sl_sim_rand_below(&g->rng, 12);
    if (g->emitted > 0)
        out[n++] = ' ';
    const char *w = words[sl_sim_rand_below(&g->rng, SL_ARRAY_LEN(words))];
    size_t wl = strlen(w);
    memcpy(out + n, w, wl);
    if (first_of_sentence && out[n] >= 'a' && out[n] <= 'z')
        out[n] = (char)(out[n] - 'a' + 'A');
    n += wl;
    g->emitted++;
    g->sentence_left--;
    /* The answer always ends a sentence; inside one, an occasional comma. */
    if (g->emitted == g->length)
        g->sentence_left = 0;
    if (g->sentence_left == 0)
        out[n++] = '.';
    else if (g->sentence_left > 2 && sl_sim_rand_below(&g->rng, 10) == 0)
        out[n++] = ',';
    return n;
}

const char *sl_sim_finish_name(enum sl_sim_finish f)
{
    return f == SL_SIM_FINISH_LENGTH ? "length" : "stop";
}

static const char *find(const char *hay, size_t hay_len, struct sl_str needle)
{
    if (needle.len == 0 || needle.len > hay_len)
        return NULL;
    return memmem(hay, hay_len, needle.base, needle.len);
}

void sl_sim_plan(uint64_t seed, uint64_t max_tokens, const struct sl_str *stops, size_t n_stops,
                 struct sl_sim_plan *plan, char *text)
{
    char local[SL_SIM_TEXT_MAX];
    uint32_t ends[SL_SIM_GEN_MAX_TOKENS]; /* text length after each token */
    struct sl_sim_gen g;
    char *t = text ? text : local;
    size_t len = 0;
    uint32_t tokens = 0;
    sl_sim_gen_init(&g, seed);
    for (;;) {
        if (max_tokens && tokens >= max_tokens)
            break;
        size_t n = sl_sim_gen_next(&g, t + len);
        if (n == 0)
            break;
        len += n;
        ends[tokens++] = (uint32_t)len;
    }
    plan->tokens = tokens;
    plan->bytes = (uint32_t)len;
    plan->finish = g.emitted < g.length ? SL_SIM_FINISH_LENGTH : SL_SIM_FINISH_STOP;
    /* The earliest occurrence of any stop sequence ends the answer there. */
    const char *cut = NULL;
    for (size_t i = 0; i < n_stops; i++) {
        /* Once a cut is known, only matches starting before it matter. */
        size_t span = cut ? SL_MIN(len, (size_t)(cut - t) + stops[i].len - 1) : len;
        const char *at = find(t, span, stops[i]);
        if (at && (cut == NULL || at < cut))
            cut = at;
    }
    if (cut) {
        size_t bytes = (size_t)(cut - t);
        uint32_t k = 0;
        while (k < tokens && ends[k] <= bytes)
            k++;
        /* Tokens fully or partly before the cut were generated. */
        plan->tokens = (k < tokens && (k == 0 ? 0 : ends[k - 1]) < bytes) ? k + 1 : k;
        plan->bytes = (uint32_t)bytes;
        plan->finish = SL_SIM_FINISH_STOP;
    }
}

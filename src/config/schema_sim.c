/*
 * The `simulator:` section: the schemas of one simulated endpoint, its
 * deployments and its fault rules; the checks that need more than one
 * entry; and the configuration `sluice sim` runs when given no file. The
 * section's two top-level rows (simulator.seed, simulator.endpoints) are in
 * schema.c's table, which points here for the rest.
 */
#include <stdlib.h>
#include <string.h>

#include "config/schema.h"

_Static_assert(sizeof(enum sl_sim_flavor) == sizeof(int), "enum fields are stored as int");
_Static_assert(sizeof(enum sl_sim_kind) == sizeof(int), "enum fields are stored as int");
_Static_assert(sizeof(enum sl_sim_capacity) == sizeof(int), "enum fields are stored as int");
_Static_assert(sizeof(enum sl_sim_fault_kind) == sizeof(int), "enum fields are stored as int");

#define SECONDS 1000ull
#define MINUTES (60 * SECONDS)
#define HOURS (60 * MINUTES)
#define PPM 1000000u
/* Enough for any test topology, small enough that a typo'd file stays cheap. */
#define MAX_ENTRIES 64
#define MAX_NAME 64

const char sl_cfg_sim_doc[] =
    "Simulated Azure OpenAI resources and OpenAI-compatible servers, to develop and test "
    "against without real quota, cost or keys. Each entry of `simulator.endpoints` listens "
    "on its own address and serves the deployments listed under it, with Azure's paths, "
    "headers, rate limits and error bodies, and fails on purpose as its `faults` say.\n"
    "\n"
    "`sluice sim --config FILE` serves these endpoints. `sluice serve` serves them too, in "
    "the same process as the gateway, whenever the section is present: a development "
    "convenience, so that one command starts a gateway and the backends behind it. Leave the "
    "section out of production files.\n"
    "\n"
    "An endpoint's `listen` must not share a port with the gateway's `listen` or "
    "`admin_listen`, nor with another endpoint. `examples/sim-topologies.yaml` shows several "
    "endpoints side by side; [simulator.md](simulator.md) describes what the simulator "
    "answers and how fault rules are applied.";

static const struct sl_cfg_choice flavors[] = {
    {"azure", SL_SIM_FLAVOR_AZURE},
    {"openai", SL_SIM_FLAVOR_OPENAI},
    {NULL, 0},
};

static const struct sl_cfg_choice kinds[] = {
    {"chat", SL_SIM_KIND_CHAT},
    {"completions", SL_SIM_KIND_COMPLETIONS},
    {"embeddings", SL_SIM_KIND_EMBEDDINGS},
    {NULL, 0},
};

static const struct sl_cfg_choice capacities[] = {
    {"standard", SL_SIM_CAPACITY_STANDARD},
    {"provisioned", SL_SIM_CAPACITY_PROVISIONED},
    {NULL, 0},
};

static const struct sl_cfg_choice fault_kinds[] = {
    {"none", SL_SIM_FAULT_NONE},
    {"status", SL_SIM_FAULT_STATUS},
    {"reset", SL_SIM_FAULT_RESET},
    {"refuse", SL_SIM_FAULT_REFUSE},
    {"stall_headers", SL_SIM_FAULT_STALL_HEADERS},
    {"stall_stream", SL_SIM_FAULT_STALL_STREAM},
    {"cut_stream", SL_SIM_FAULT_CUT_STREAM},
    {"trickle", SL_SIM_FAULT_TRICKLE},
    {"malformed_json", SL_SIM_FAULT_MALFORMED_JSON},
    {NULL, 0},
};

static const char *choice_name(const struct sl_cfg_choice *choices, int value)
{
    for (const struct sl_cfg_choice *c = choices; c->name; c++)
        if (c->value == value)
            return c->name;
    return "?";
}

/* ---- one fault rule ---- */

static const struct sl_cfg_field fault_fields[] = {
    {
        .name = "kind",
        .type = SL_CFG_ENUM,
        .required = true,
        SL_CFG_UNBOUNDED,
        .doc = "What goes wrong. `none`: nothing (the request is served normally; a step in a "
               "scripted sequence). `status`: answer `status` with an Azure-style error body "
               "(a 429 carries retry headers). `reset`: reset the connection instead of "
               "answering. `refuse`: stop listening for `duration`, so that new connections "
               "are refused. `stall_headers`: wait `duration` before sending anything. "
               "`stall_stream`: stream `after` chunks, then stall for `duration`. "
               "`cut_stream`: stream `after` chunks, then close the connection in the middle "
               "of an event, without `[DONE]`. `trickle`: send the response slowly, one chunk "
               "per `duration`. `malformed_json`: answer 200 with a body that is not valid "
               "JSON.",
        SL_CFG_MEMBER(struct sl_config_sim_fault, kind),
        .choices = fault_kinds,
    },
    {
        .name = "status",
        .type = SL_CFG_INT,
        .def = "500",
        .min = 400,
        .max = 599,
        .doc = "HTTP status a `status` fault answers with. Only valid with `kind: status`.",
        SL_CFG_MEMBER(struct sl_config_sim_fault, status),
    },
    {
        .name = "retry_after",
        .type = SL_CFG_DURATION,
        .def = "0",
        .min = 0,
        .max = HOURS,
        .doc = "For a 429: the wait advertised in the `retry-after-ms` and `retry-after` "
               "headers. `0`: no retry headers. Note that some clients (LangChain) only retry "
               "when the wait is 60s or less.",
        SL_CFG_MEMBER(struct sl_config_sim_fault, retry_after_ms),
    },
    {
        .name = "probability",
        .type = SL_CFG_RATIO,
        .def = "1",
        .min = 0,
        .max = PPM,
        .doc = "Chance that the rule strikes a request it matches: `1` (or `100%`) every time, "
               "`0.05` (or `5%`) one request in twenty.",
        SL_CFG_MEMBER(struct sl_config_sim_fault, probability_ppm),
    },
    {
        .name = "count",
        .type = SL_CFG_INT,
        .def = "0",
        SL_CFG_UNBOUNDED,
        .doc = "How many times the rule strikes before it is used up. `0`: without limit. "
               "Rules with a count make a script, e.g. two 429s, then normal service.",
        SL_CFG_MEMBER(struct sl_config_sim_fault, count),
    },
    {
        .name = "deployment",
        .type = SL_CFG_STRING,
        .min = 1,
        .max = MAX_NAME,
        .doc = "Only requests to this deployment (the `name` of one of the endpoint's "
               "`deployments`). Not set: requests to any deployment.",
        SL_CFG_MEMBER(struct sl_config_sim_fault, deployment),
    },
    {
        .name = "duration",
        .type = SL_CFG_DURATION,
        .def = "10s",
        .min = 0,
        .max = HOURS,
        .doc = "How long `refuse`, `stall_headers` and `stall_stream` last; for `trickle`, the "
               "pause between chunks.",
        SL_CFG_MEMBER(struct sl_config_sim_fault, duration_ms),
    },
    {
        .name = "after",
        .type = SL_CFG_INT,
        .def = "3",
        .min = 0,
        .max = 1000000,
        .doc = "For `stall_stream` and `cut_stream`: how many chunks are sent before the fault "
               "strikes.",
        SL_CFG_MEMBER(struct sl_config_sim_fault, after),
    },
};

static void fault_finish(void *obj, struct sl_cfg_check *chk)
{
    const struct sl_config_sim_fault *f = obj;
    /* A status on another kind is ignored by the simulator: most likely the
     * user meant kind: status and would be puzzled by the silence. */
    if (f->kind != SL_SIM_FAULT_STATUS && sl_cfg_check_in_file(chk, "status") &&
        sl_cfg_check_in_file(chk, "kind") && sl_cfg_check_usable(chk, "kind"))
        sl_cfg_check_error(chk, "status",
                           "only a fault of kind status answers with a status, and this one is "
                           "kind %s (remove status, or set kind: status)",
                           choice_name(fault_kinds, (int)f->kind));
}

static const struct sl_cfg_schema fault_schema = {
    .fields = fault_fields,
    .n_fields = SL_ARRAY_LEN(fault_fields),
    .size = sizeof(struct sl_config_sim_fault),
    .finish = fault_finish,
};

/* ---- one deployment ---- */

static const struct sl_cfg_field deployment_fields[] = {
    {
        .name = "name",
        .type = SL_CFG_STRING,
        .required = true,
        .min = 1,
        .max = MAX_NAME,
        .doc = "Deployment name: the `{deployment}` of Azure paths "
               "(`/openai/deployments/{deployment}/...`), and the `model` a request names on "
               "OpenAI-style paths. Unique on its endpoint.",
        SL_CFG_MEMBER(struct sl_config_sim_deployment, name),
    },
    {
        .name = "model",
        .type = SL_CFG_STRING,
        .required = true,
        .min = 1,
        .max = MAX_NAME,
        .doc = "Model name reported in responses, e.g. `gpt-4o`.",
        SL_CFG_MEMBER(struct sl_config_sim_deployment, model),
    },
    {
        .name = "version",
        .type = SL_CFG_STRING,
        .def = "",
        .min = 0,
        .max = MAX_NAME,
        .doc = "Model version, e.g. `2024-08-06`, for the responses that report one.",
        SL_CFG_MEMBER(struct sl_config_sim_deployment, version),
    },
    {
        .name = "kind",
        .type = SL_CFG_ENUM,
        .def = "chat",
        SL_CFG_UNBOUNDED,
        .doc = "What the deployment serves: `chat` (chat completions and responses), "
               "`completions` (legacy completions) or `embeddings`. A request for another "
               "operation is refused, as Azure refuses it.",
        SL_CFG_MEMBER(struct sl_config_sim_deployment, kind),
        .choices = kinds,
    },
    {
        .name = "capacity",
        .type = SL_CFG_ENUM,
        .def = "standard",
        SL_CFG_UNBOUNDED,
        .doc = "`standard`: pay-as-you-go quota, `tpm` and `rpm` counted over the minute. "
               "`provisioned`: provisioned throughput (PTU), answering 429 when utilisation "
               "over the last second passes 100%.",
        SL_CFG_MEMBER(struct sl_config_sim_deployment, capacity),
        .choices = capacities,
    },
    {
        .name = "tpm",
        .type = SL_CFG_INT,
        .def = "0",
        .min = 0,
        .max = 1000000000,
        .doc = "Tokens per minute. As on Azure, a request is charged its prompt estimate plus "
               "its `max_tokens` when it is admitted, and gets 429 with retry headers once the "
               "minute's tokens are spent. `0`: unlimited.",
        SL_CFG_MEMBER(struct sl_config_sim_deployment, tpm),
    },
    {
        .name = "rpm",
        .type = SL_CFG_INT,
        .def = "0",
        .min = 0,
        .max = 1000000000,
        .doc = "Requests per minute; more get 429. `0`: derived from `tpm` as Azure assigns "
               "it, 6 per 1000 TPM (unlimited when `tpm` is `0` too).",
        SL_CFG_MEMBER(struct sl_config_sim_deployment, rpm),
    },
    {
        .name = "ttft",
        .type = SL_CFG_DURATION,
        .def = "50ms",
        .min = 0,
        .max = 10 * MINUTES,
        .doc = "Time to first token: how long the model \"thinks\" before the first byte of "
               "the answer.",
        SL_CFG_MEMBER(struct sl_config_sim_deployment, ttft_ms),
    },
    {
        .name = "tokens_per_second",
        .type = SL_CFG_INT,
        .def = "200",
        .min = 1,
        .max = 100000,
        .doc = "Generation speed after the first token, which sets the pace of a stream.",
        SL_CFG_MEMBER(struct sl_config_sim_deployment, tokens_per_second),
    },
    {
        .name = "jitter_percent",
        .type = SL_CFG_INT,
        .def = "10",
        .min = 0,
        .max = 100,
        .doc = "Random variation of `ttft` and of the token pace, up to this many percent "
               "either way, so that timings are not all alike. `0`: exact timings.",
        SL_CFG_MEMBER(struct sl_config_sim_deployment, jitter_percent),
    },
    {
        .name = "default_max_tokens",
        .type = SL_CFG_INT,
        .def = "256",
        .min = 1,
        .max = 1000000,
        .doc = "Longest answer, and the tokens charged against `tpm`, when a request sets no "
               "`max_tokens`.",
        SL_CFG_MEMBER(struct sl_config_sim_deployment, default_max_tokens),
    },
    {
        .name = "context_window",
        .type = SL_CFG_INT,
        .def = "128000",
        .min = 1,
        .max = 10000000,
        .doc = "Most tokens a request may use, prompt plus `max_tokens`; beyond it the answer "
               "is 400 `context_length_exceeded`.",
        SL_CFG_MEMBER(struct sl_config_sim_deployment, context_window),
    },
    {
        .name = "dimensions",
        .type = SL_CFG_INT,
        .def = "1536",
        .min = 1,
        .max = 16384,
        .doc = "Length of the vectors an `embeddings` deployment returns. Not used by other "
               "kinds.",
        SL_CFG_MEMBER(struct sl_config_sim_deployment, dimensions),
    },
};

static const struct sl_cfg_schema deployment_schema = {
    .fields = deployment_fields,
    .n_fields = SL_ARRAY_LEN(deployment_fields),
    .size = sizeof(struct sl_config_sim_deployment),
    .unique = "name",
};

/* ---- one endpoint ---- */

static const struct sl_cfg_field endpoint_fields[] = {
    {
        .name = "name",
        .type = SL_CFG_STRING,
        .required = true,
        .min = 1,
        .max = MAX_NAME,
        .doc = "Name of the endpoint in logs (think of it as the Azure resource's name). "
               "Unique among the endpoints.",
        SL_CFG_MEMBER(struct sl_config_sim_endpoint, name),
    },
    {
        .name = "listen",
        .type = SL_CFG_ADDR,
        .required = true,
        SL_CFG_UNBOUNDED,
        .doc = "Address the endpoint serves on. Its port must not be taken by the gateway's "
               "`listen` or `admin_listen`, nor by another endpoint.",
        SL_CFG_MEMBER(struct sl_config_sim_endpoint, listen),
    },
    {
        .name = "region",
        .type = SL_CFG_STRING,
        .def = "eastus",
        .min = 1,
        .max = MAX_NAME,
        .doc = "Azure region reported in the `x-ms-region` response header, e.g. "
               "`swedencentral`.",
        SL_CFG_MEMBER(struct sl_config_sim_endpoint, region),
    },
    {
        .name = "flavor",
        .type = SL_CFG_ENUM,
        .def = "azure",
        SL_CFG_UNBOUNDED,
        .doc = "`azure`: behave as an Azure OpenAI resource (`api-version` required, "
               "content-filter results, `x-ms-*` headers). `openai`: behave as a plain "
               "OpenAI-compatible server, such as a model server run on premises.",
        SL_CFG_MEMBER(struct sl_config_sim_endpoint, flavor),
        .choices = flavors,
    },
    {
        .name = "api_keys",
        .type = SL_CFG_STRING_LIST,
        .min = 0,
        .max = MAX_ENTRIES,
        .doc = "Keys the endpoint accepts, in an `api-key` header or as `Authorization: "
               "Bearer KEY`. Write them as `${NAME}` to keep them out of the file. None: any "
               "non-empty key is accepted (a request without a key is still refused).",
        SL_CFG_MEMBER(struct sl_config_sim_endpoint, api_keys),
        SL_CFG_COUNT(struct sl_config_sim_endpoint, n_api_keys),
    },
    {
        .name = "deployments",
        .type = SL_CFG_OBJECT_LIST,
        .required = true,
        .min = 1,
        .max = MAX_ENTRIES,
        .doc = "The model deployments the endpoint serves (see below).",
        SL_CFG_MEMBER(struct sl_config_sim_endpoint, deployments),
        SL_CFG_COUNT(struct sl_config_sim_endpoint, n_deployments),
        .sub = &deployment_schema,
    },
    {
        .name = "faults",
        .type = SL_CFG_OBJECT_LIST,
        .min = 0,
        .max = MAX_ENTRIES,
        .doc = "Fault rules (see below), tried in order for each request; "
               "[simulator.md](simulator.md) says how. None: requests are only limited by "
               "`tpm` and `rpm`.",
        SL_CFG_MEMBER(struct sl_config_sim_endpoint, faults),
        SL_CFG_COUNT(struct sl_config_sim_endpoint, n_faults),
        .sub = &fault_schema,
    },
};

/* A fault rule's deployment must be one of the endpoint's: a typo would
 * otherwise make a rule that never strikes, and a test that passes for the
 * wrong reason. */
static void endpoint_finish(void *obj, struct sl_cfg_check *chk)
{
    const struct sl_config_sim_endpoint *ep = obj;
    const char **names = NULL;
    struct sl_buf hint;
    sl_buf_init(&hint);
    if (ep->n_deployments == 0 || !sl_cfg_check_usable(chk, "deployments") ||
        !sl_cfg_check_usable(chk, "faults"))
        goto out;
    names = calloc(ep->n_deployments, sizeof(*names));
    if (names == NULL)
        goto out; /* only a hint is lost; the loader reports its own ENOMEM */
    for (size_t i = 0; i < ep->n_deployments; i++)
        names[i] = ep->deployments[i].name;
    for (size_t i = 0; i < ep->n_faults; i++) {
        const char *want = ep->faults[i].deployment;
        size_t d = 0;
        while (want && d < ep->n_deployments && strcmp(want, names[d]) != 0)
            d++;
        if (want == NULL || d < ep->n_deployments)
            continue;
        hint.len = 0;
        const char *near = sl_cfg_suggest(sl_str_from_cstr(want), names, ep->n_deployments);
        if (near) {
            sl_buf_appendf(&hint, " (did you mean \"%s\"?)", near);
        } else {
            sl_buf_appendf(&hint, "; its deployments are ");
            for (size_t k = 0; k < ep->n_deployments; k++)
                sl_buf_appendf(&hint, "%s%s", k ? ", " : "", names[k]);
        }
        sl_cfg_check_error_in(chk, "faults", i, "deployment",
                              "endpoint \"%s\" has no deployment \"%s\"%s", ep->name, want,
                              hint.base ? hint.base : "");
    }
out:
    free(names);
    sl_buf_dispose(&hint);
}

const struct sl_cfg_schema sl_cfg_sim_endpoint_schema = {
    .fields = endpoint_fields,
    .n_fields = SL_ARRAY_LEN(endpoint_fields),
    .size = sizeof(struct sl_config_sim_endpoint),
    .unique = "name",
    .finish = endpoint_finish,
};

/* ---- checks across sections ---- */

/* Reports endpoint i's listen taking the port of `other` (described by what). */
static void report_taken(struct sl_cfg_check *chk, const struct sl_config_sim_endpoint *ep,
                         size_t i, const struct sl_config_addr *other, const char *what)
{
    struct sl_buf mine, theirs;
    sl_buf_init(&mine);
    sl_buf_init(&theirs);
    sl_config_addr_format(&ep->listen, &mine);
    sl_config_addr_format(other, &theirs);
    bool same = strcmp(ep->listen.host, other->host) == 0;
    sl_cfg_check_error_in(chk, "simulator.endpoints", i, "listen",
                          "endpoint \"%s\" listens on %s, whose port is taken by %s %s%s; give "
                          "each its own port",
                          ep->name, mine.base ? mine.base : "", what,
                          theirs.base ? theirs.base : "",
                          same ? "" : " (a wildcard host takes the port on every address)");
    sl_buf_dispose(&mine);
    sl_buf_dispose(&theirs);
}

void sl_cfg_sim_check_listeners(const struct sl_config *c, struct sl_cfg_check *chk)
{
    const struct sl_config_sim *sim = &c->simulator;
    /* An endpoint list with a problem was not stored: nothing to compare. */
    if (!sl_cfg_check_usable(chk, "simulator.endpoints"))
        return;
    bool admin_ok = sl_cfg_check_usable(chk, "admin_listen");
    bool listen_ok = sl_cfg_check_usable(chk, "listen");
    struct sl_buf what;
    sl_buf_init(&what);
    for (size_t i = 0; i < sim->n_endpoints; i++) {
        const struct sl_config_sim_endpoint *ep = &sim->endpoints[i];
        /* One problem per endpoint: the first collision is enough to act on. */
        if (admin_ok && sl_cfg_addr_overlaps(&ep->listen, &c->admin_listen)) {
            report_taken(chk, ep, i, &c->admin_listen, "admin_listen");
            continue;
        }
        size_t j = 0;
        while (listen_ok && j < c->n_listen && !sl_cfg_addr_overlaps(&ep->listen, &c->listen[j]))
            j++;
        if (listen_ok && j < c->n_listen) {
            report_taken(chk, ep, i, &c->listen[j], "the gateway's listen address");
            continue;
        }
        for (j = 0; j < i; j++) {
            const struct sl_config_sim_endpoint *other = &sim->endpoints[j];
            if (!sl_cfg_addr_overlaps(&ep->listen, &other->listen))
                continue;
            what.len = 0;
            if (sl_buf_appendf(&what, "endpoint \"%s\" (simulator.endpoints[%zu]) at", other->name,
                               j) == SL_OK)
                report_taken(chk, ep, i, &other->listen, what.base);
            break;
        }
    }
    sl_buf_dispose(&what);
}

/* ---- `sluice sim` without a file ---- */

/*
 * Built as YAML and loaded like any file, so that it goes through the same
 * defaults and checks as a user's configuration. admin_listen moves next to
 * the endpoint (port + 1, or port - 1 at 65535) so that a simulator started
 * beside a gateway on its defaults does not take the gateway's admin port
 * 9090 (on 127.0.0.1 or ::1 when the endpoint is not on loopback: it has
 * no admin_token); the gateway's `listen`, unused by the simulator, keeps its default
 * :8080 unless the endpoint or that admin port need it, when it moves to
 * the next free port so that the configuration stays valid.
 */
int sl_config_load_sim_default(const struct sl_config_addr *addr, struct sl_config **out,
                               struct sl_config_errors *errs)
{
    struct sl_buf yaml, listen;
    int err;
    struct sl_config_addr admin = *addr;
    uint16_t gateway_port = 8080;
    sl_buf_init(&yaml);
    sl_buf_init(&listen);
    *out = NULL;

    admin.port = addr->port < 65535 ? (uint16_t)(addr->port + 1) : (uint16_t)(addr->port - 1);
    /* The control API injects failures and has no token here: it stays on this machine even
     * when the endpoint listens on the network. */
    if (strncmp(addr->host, "127.", 4) != 0 && strcmp(addr->host, "::1") != 0)
        snprintf(admin.host, sizeof(admin.host), "%s",
                 strchr(addr->host, ':') ? "::1" : "127.0.0.1");
    while (gateway_port == addr->port || gateway_port == admin.port)
        gateway_port++;
    if ((err = sl_config_addr_format(addr, &listen)) != SL_OK)
        goto fail;
    err = sl_buf_appendf(&yaml, "listen: \":%u\"\nadmin_listen: \"", (unsigned)gateway_port);
    err = err ? err : sl_config_addr_format(&admin, &yaml);
    err = err ? err
              : sl_buf_appendf(
                    &yaml,
                    "\"\n"
                    "simulator:\n"
                    "  endpoints:\n"
                    "    - name: sim\n"
                    "      listen: \"%s\"\n"
                    "      region: eastus\n"
                    "      flavor: azure\n"
                    "      deployments:\n"
                    "        - {name: gpt-4o, model: gpt-4o, version: \"2024-08-06\", kind: chat,"
                    " tpm: 0}\n"
                    "        - {name: gpt-4o-mini, model: gpt-4o-mini, version: \"2024-07-18\","
                    " kind: chat}\n"
                    "        - {name: gpt-35-turbo-instruct, model: gpt-35-turbo-instruct,"
                    " version: \"0914\", kind: completions}\n"
                    "        - {name: text-embedding-3-small, model: text-embedding-3-small,"
                    " version: \"1\", kind: embeddings, dimensions: 1536}\n",
                    listen.base);
    if (err)
        goto fail;
    err = sl_config_load_buffer("<sim default>", yaml.base, yaml.len, out, errs);
fail:
    sl_buf_dispose(&yaml);
    sl_buf_dispose(&listen);
    return err;
}

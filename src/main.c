/* sluice: subcommand dispatch only. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "core/core.h"
#include "gateway/gateway.h"
#include "ledger/ledger.h"

static const char usage[] =
    "usage: sluice <command> [options]\n"
    "\n"
    "commands:\n"
    "  serve [--config FILE]     run the gateway (built-in defaults without --config)\n"
    "  sim [--config FILE | --listen ADDR]\n"
    "                            run simulated Azure OpenAI endpoints (docs/simulator.md)\n"
    "  status [--admin ADDR | --config FILE] [--json]\n"
    "                            show a running gateway's routes and backends (circuits)\n"
    "  usage --db FILE [--from T] [--to T] [--by G] [--format F]\n"
    "                            report tokens, errors, latency and cost from a usage ledger\n"
    "  check-config FILE         validate a configuration file; exit 0 when valid, 1 when not\n"
    "  hash-key [KEY]            print the sha256:... form of a client key for `clients.keys`\n"
    "  config-reference          print the configuration reference (docs/config.md)\n"
    "  version                   print the version\n"
    "  help                      print this help\n"
    "\n"
    "Run 'sluice <command> --help' for a command's options.\n";

static int bad_usage(const char *fmt, const char *arg)
{
    fprintf(stderr, "sluice: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n\n%s", usage);
    return 2;
}

static bool is_help(const char *arg)
{
    return strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0;
}

static int load_config(const char *path, struct sl_config **cfg)
{
    struct sl_config_errors errs;
    sl_config_errors_init(&errs);
    int err = path ? sl_config_load_file(path, cfg, &errs) : sl_config_load_default(cfg, &errs);
    if (err)
        sl_config_errors_print(&errs, stderr);
    sl_config_errors_dispose(&errs);
    return err;
}

static int cmd_serve(int argc, char **argv)
{
    static const char help[] = "usage: sluice serve [--config FILE]\n"
                               "\n"
                               "Run the gateway. Without --config it serves the built-in "
                               "defaults.\nSIGTERM or SIGINT shuts it down gracefully.\n";
    const char *path = NULL;
    for (int i = 0; i < argc; i++) {
        if (is_help(argv[i])) {
            fputs(help, stdout);
            return 0;
        }
        if ((strcmp(argv[i], "--config") == 0 || strcmp(argv[i], "-c") == 0) && i + 1 < argc) {
            path = argv[++i];
        } else if (strncmp(argv[i], "--config=", 9) == 0) {
            path = argv[i] + 9;
        } else {
            return bad_usage("serve: unknown option or missing value: %s", argv[i]);
        }
    }
    struct sl_config *cfg = NULL;
    if (load_config(path, &cfg) != SL_OK)
        return 1;
    int rc = sl_gateway_run(cfg, SL_GATEWAY_SERVE);
    sl_config_unref(cfg);
    return rc;
}

static int cmd_sim(int argc, char **argv)
{
    static const char help[] =
        "usage: sluice sim [--config FILE | --listen ADDR]\n"
        "\n"
        "Run simulated Azure OpenAI / OpenAI endpoints for development and tests.\n"
        "  --config FILE   the endpoints of FILE's `simulator` section\n"
        "  --listen ADDR   one endpoint at ADDR with a default set of deployments; its\n"
        "                  control API (/_sim/...) listens on the next port\n"
        "Without options: --listen 127.0.0.1:8081.\n"
        "SIGTERM or SIGINT shuts it down gracefully.\n";
    const char *path = NULL, *listen = NULL;
    for (int i = 0; i < argc; i++) {
        if (is_help(argv[i])) {
            fputs(help, stdout);
            return 0;
        }
        if ((strcmp(argv[i], "--config") == 0 || strcmp(argv[i], "-c") == 0) && i + 1 < argc)
            path = argv[++i];
        else if (strncmp(argv[i], "--config=", 9) == 0)
            path = argv[i] + 9;
        else if (strcmp(argv[i], "--listen") == 0 && i + 1 < argc)
            listen = argv[++i];
        else if (strncmp(argv[i], "--listen=", 9) == 0)
            listen = argv[i] + 9;
        else
            return bad_usage("sim: unknown option or missing value: %s", argv[i]);
    }
    if (path && listen)
        return bad_usage("sim: give --config or --listen, not both%s", "");
    if (path == NULL && listen == NULL)
        listen = "127.0.0.1:8081";
    struct sl_config *cfg = NULL;
    if (listen) {
        struct sl_config_addr addr;
        struct sl_buf why;
        sl_buf_init(&why);
        int err = sl_config_parse_addr(sl_str_from_cstr(listen), &addr, &why);
        if (err)
            fprintf(stderr, "sluice: sim: --listen %s: %s\n", listen, why.base ? why.base : "");
        sl_buf_dispose(&why);
        if (err)
            return 2;
        struct sl_config_errors errs;
        sl_config_errors_init(&errs);
        err = sl_config_load_sim_default(&addr, &cfg, &errs);
        sl_config_errors_print(&errs, stderr);
        sl_config_errors_dispose(&errs);
        if (err)
            return 1;
    } else if (load_config(path, &cfg) != SL_OK) {
        return 1;
    }
    int rc = sl_gateway_run(cfg, SL_GATEWAY_SIM);
    sl_config_unref(cfg);
    return rc;
}

static int cmd_status(int argc, char **argv)
{
    static const char help[] =
        "usage: sluice status [--admin ADDR | --config FILE] [--json]\n"
        "\n"
        "Show a running gateway's routes and backends: each backend's circuit (closed, open,\n"
        "half-open), until when and why, requests in flight and recent outcomes. It asks the\n"
        "gateway's admin listener: ADDR (e.g. 127.0.0.1:9090), or the admin_listen of FILE,\n"
        "or else that of the built-in configuration. --json prints the answer as it is.\n"
        "The admin_token, when the listener needs one, is FILE's, or SLUICE_ADMIN_TOKEN's.\n";
    const char *admin = NULL, *path = NULL;
    bool json = false;
    for (int i = 0; i < argc; i++) {
        if (is_help(argv[i])) {
            fputs(help, stdout);
            return 0;
        }
        if (strcmp(argv[i], "--admin") == 0 && i + 1 < argc)
            admin = argv[++i];
        else if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
            path = argv[++i];
        else if (strcmp(argv[i], "--json") == 0)
            json = true;
        else
            return bad_usage("status: unknown option or missing value: %s", argv[i]);
    }
    if (admin && path)
        return bad_usage("status: give --admin or --config, not both%s", "");
    struct sl_config_addr addr;
    char token[257] = "";
    const char *env_token = getenv("SLUICE_ADMIN_TOKEN");
    if (env_token)
        snprintf(token, sizeof(token), "%s", env_token);
    if (admin) {
        struct sl_buf why;
        sl_buf_init(&why);
        int err = sl_config_parse_addr(sl_str_from_cstr(admin), &addr, &why);
        if (err)
            fprintf(stderr, "sluice: status: --admin: %s\n", why.base ? why.base : "bad address");
        sl_buf_dispose(&why);
        if (err)
            return 2;
    } else {
        struct sl_config *cfg = NULL;
        if (load_config(path, &cfg) != SL_OK)
            return 1;
        addr = cfg->admin_listen;
        if (cfg->admin_token)
            snprintf(token, sizeof(token), "%s", cfg->admin_token);
        sl_config_unref(cfg);
    }
    return sl_gateway_print_status(&addr, token[0] ? token : NULL, json, stdout, stderr);
}

static int cmd_usage(int argc, char **argv)
{
    static const char help[] =
        "usage: sluice usage --db FILE [--from T] [--to T] [--by G] [--format F]\n"
        "\n"
        "Report from a usage ledger (usage.db): per group, requests, errors, tokens\n"
        "(prompt, cached, completion, reasoning, total), p50/p95 latency and time to\n"
        "first token, cost in USD and how many counts were estimated (docs/usage.md).\n"
        "  --from T, --to T  the requests that arrived from --from up to (not including)\n"
        "                    --to. T: an RFC 3339 date (2026-11-26: its 00:00 UTC) or\n"
        "                    date-time (2026-11-26T10:00:00Z), or a time ago (30m, 24h,\n"
        "                    7d). Default: the last 7 days, up to now\n"
        "  --by G            client (default), route, backend, model or day (UTC)\n"
        "  --format F        table (default), csv or json\n"
        "The file is only read; a gateway may be writing it.\n";
    const char *db = NULL, *from = NULL, *to = NULL, *by = NULL, *format = "table";
    for (int i = 0; i < argc; i++) {
        const char **opt = NULL;
        if (is_help(argv[i])) {
            fputs(help, stdout);
            return 0;
        }
        if (strcmp(argv[i], "--db") == 0)
            opt = &db;
        else if (strcmp(argv[i], "--from") == 0)
            opt = &from;
        else if (strcmp(argv[i], "--to") == 0)
            opt = &to;
        else if (strcmp(argv[i], "--by") == 0)
            opt = &by;
        else if (strcmp(argv[i], "--format") == 0)
            opt = &format;
        if (opt == NULL || i + 1 >= argc)
            return bad_usage("usage: unknown option or missing value: %s", argv[i]);
        *opt = argv[++i];
    }
    if (db == NULL)
        return bad_usage("usage: --db FILE is required (the usage.db of the configuration)%s", "");
    uint64_t now = sl_clock_unix_ms();
    struct sl_ledger_report_query q;
    enum sl_ledger_format f;
    sl_ledger_report_query_init(&q, now);
    if (by && sl_ledger_group_parse(sl_str_from_cstr(by), &q.by) != SL_OK)
        return bad_usage("usage: --by takes client, route, backend, model or day, not %s", by);
    if (sl_ledger_format_parse(sl_str_from_cstr(format), &f) != SL_OK)
        return bad_usage("usage: --format takes table, csv or json, not %s", format);
    if (from && sl_ledger_parse_time(sl_str_from_cstr(from), now, &q.from_ms) != SL_OK)
        return bad_usage("usage: --from %s is not a time (2026-11-26, 2026-11-26T10:00:00Z, 24h, "
                         "7d)",
                         from);
    if (to && sl_ledger_parse_time(sl_str_from_cstr(to), now, &q.to_ms) != SL_OK)
        return bad_usage("usage: --to %s is not a time (2026-11-26, 2026-11-26T10:00:00Z, 24h, "
                         "7d)",
                         to);
    if (q.from_ms >= q.to_ms)
        return bad_usage("usage: --from must be before --to%s", "");
    struct sl_buf json, out, why;
    sl_buf_init(&json);
    sl_buf_init(&out);
    sl_buf_init(&why);
    int err = sl_ledger_report(db, &q, &json, &why);
    if (err == SL_OK)
        err = sl_ledger_report_format((struct sl_str){json.base, json.len}, f, &out);
    if (err == SL_OK)
        fwrite(out.base, 1, out.len, stdout);
    else
        fprintf(stderr, "sluice: usage: %s\n", why.base ? why.base : sl_strerror(err));
    sl_buf_dispose(&json);
    sl_buf_dispose(&out);
    sl_buf_dispose(&why);
    return err == SL_OK ? 0 : 1;
}

static int cmd_check_config(int argc, char **argv)
{
    static const char help[] =
        "usage: sluice check-config FILE\n"
        "\n"
        "Validate FILE. Prints every problem as FILE:LINE:COL: key.path: message\n"
        "and exits 1 when there is any; prints 'FILE: ok' and exits 0 otherwise.\n";
    if (argc == 1 && is_help(argv[0])) {
        fputs(help, stdout);
        return 0;
    }
    if (argc != 1 || argv[0][0] == '-')
        return bad_usage("check-config takes exactly one FILE%s", "");
    struct sl_config *cfg = NULL;
    if (load_config(argv[0], &cfg) != SL_OK)
        return 1;
    printf("%s: ok\n", argv[0]);
    sl_config_unref(cfg);
    return 0;
}

static int cmd_hash_key(int argc, char **argv)
{
    static const char help[] =
        "usage: sluice hash-key [KEY]\n"
        "\n"
        "Print the form of a client key that goes into the configuration\n"
        "(clients[].keys): sha256:<64 hex digits>. Without KEY, the key is read from\n"
        "standard input (one line), which keeps it out of the shell history.\n";
    if (argc == 1 && is_help(argv[0])) {
        fputs(help, stdout);
        return 0;
    }
    if (argc > 1 || (argc == 1 && argv[0][0] == '-'))
        return bad_usage("hash-key takes at most one KEY%s", "");
    char line[4096];
    struct sl_str key;
    if (argc == 1) {
        key = sl_str_from_cstr(argv[0]);
    } else {
        if (fgets(line, sizeof(line), stdin) == NULL) {
            fprintf(stderr, "sluice: hash-key: no key on standard input\n");
            return 1;
        }
        key = sl_str_from_cstr(line);
        while (key.len && (key.base[key.len - 1] == '\n' || key.base[key.len - 1] == '\r'))
            key.len--;
    }
    if (key.len == 0) {
        fprintf(stderr, "sluice: hash-key: the key is empty\n");
        return 1;
    }
    char out[72];
    sl_config_hash_key(key, out);
    printf("%s\n", out);
    return 0;
}

static int cmd_config_reference(int argc, char **argv)
{
    if (argc == 1 && is_help(argv[0])) {
        fputs("usage: sluice config-reference\n\nPrint the Markdown reference of every "
              "configuration key (docs/config.md).\n",
              stdout);
        return 0;
    }
    if (argc != 0)
        return bad_usage("config-reference takes no arguments%s", "");
    struct sl_buf out;
    sl_buf_init(&out);
    int err = sl_config_write_reference(&out);
    if (err == SL_OK)
        fwrite(out.base, 1, out.len, stdout);
    sl_buf_dispose(&out);
    return err == SL_OK ? 0 : 1;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return bad_usage("missing command%s", "");
    const char *cmd = argv[1];
    if (strcmp(cmd, "help") == 0 || is_help(cmd)) {
        fputs(usage, stdout);
        return 0;
    }
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
        if (argc > 2 && is_help(argv[2])) {
            fputs("usage: sluice version\n\nPrint the version.\n", stdout);
            return 0;
        }
        if (argc > 2)
            return bad_usage("version takes no arguments%s", "");
        printf("sluice %s\n", SL_VERSION);
        return 0;
    }
    if (strcmp(cmd, "serve") == 0)
        return cmd_serve(argc - 2, argv + 2);
    if (strcmp(cmd, "sim") == 0)
        return cmd_sim(argc - 2, argv + 2);
    if (strcmp(cmd, "status") == 0)
        return cmd_status(argc - 2, argv + 2);
    if (strcmp(cmd, "usage") == 0)
        return cmd_usage(argc - 2, argv + 2);
    if (strcmp(cmd, "check-config") == 0)
        return cmd_check_config(argc - 2, argv + 2);
    if (strcmp(cmd, "hash-key") == 0)
        return cmd_hash_key(argc - 2, argv + 2);
    if (strcmp(cmd, "config-reference") == 0)
        return cmd_config_reference(argc - 2, argv + 2);
    return bad_usage("unknown command: %s", cmd);
}

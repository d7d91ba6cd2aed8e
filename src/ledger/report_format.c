/*
 * A usage report (the JSON of report.c) for people and spreadsheets: an
 * aligned table with a total line, or CSV with one line per group.
 */
#include "ledger/internal.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

/* The columns after the key: the JSON field, the table's heading. */
static const struct {
    const char *field, *heading;
} columns[] = {
    {"requests", "requests"},
    {"errors", "errors"},
    {"prompt_tokens", "prompt"},
    {"cached_tokens", "cached"},
    {"completion_tokens", "completion"},
    {"reasoning_tokens", "reasoning"},
    {"total_tokens", "total"},
    {"latency_p50_ms", "p50_ms"},
    {"latency_p95_ms", "p95_ms"},
    {"ttft_p50_ms", "ttft_p50_ms"},
    {"ttft_p95_ms", "ttft_p95_ms"},
    {"cost_usd", "cost_usd"},
    {"estimated", "estimated"},
};
#define N_COLUMNS SL_ARRAY_LEN(columns)
#define CELL 32

int sl_ledger_format_parse(struct sl_str s, enum sl_ledger_format *out)
{
    if (sl_str_eq(s, SL_STR("table")))
        *out = SL_LEDGER_TABLE;
    else if (sl_str_eq(s, SL_STR("csv")))
        *out = SL_LEDGER_CSV;
    else if (sl_str_eq(s, SL_STR("json")))
        *out = SL_LEDGER_JSON;
    else
        return SL_EINVAL;
    return SL_OK;
}

/* A row's column as text: integers as they are, cost in USD from cost_micros (exact), none
 * (null: no TTFT measured) as empty. */
static void cell(const json_t *row, size_t col, char out[CELL])
{
    const char *field = columns[col].field;
    out[0] = '\0';
    if (strcmp(field, "cost_usd") == 0) {
        json_int_t micros = json_integer_value(json_object_get(row, "cost_micros"));
        unsigned long long m = micros > 0 ? (unsigned long long)micros : 0;
        snprintf(out, CELL, "%llu.%06llu", m / 1000000, m % 1000000);
        return;
    }
    const json_t *v = json_object_get(row, field);
    if (json_is_integer(v))
        snprintf(out, CELL, "%lld", (long long)json_integer_value(v));
}

static bool is_row(const json_t *row)
{
    return json_is_object(row) && json_is_string(json_object_get(row, "key"));
}

/* A CSV field: quoted when it has to be. */
static void append_csv_field(struct sl_buf *out, const char *s)
{
    if (strpbrk(s, ",\"\r\n") == NULL) {
        sl_buf_append(out, s, strlen(s));
        return;
    }
    sl_buf_append(out, "\"", 1);
    for (; *s; s++) {
        sl_buf_append(out, s, 1);
        if (*s == '"')
            sl_buf_append(out, "\"", 1); /* doubled */
    }
    sl_buf_append(out, "\"", 1);
}

static void format_csv(const char *by, const json_t *groups, struct sl_buf *out)
{
    append_csv_field(out, by);
    for (size_t c = 0; c < N_COLUMNS; c++)
        sl_buf_appendf(out, ",%s", columns[c].field);
    sl_buf_append(out, "\n", 1);
    size_t i;
    const json_t *row;
    json_array_foreach(groups, i, row)
    {
        char text[CELL];
        append_csv_field(out, json_string_value(json_object_get(row, "key")));
        for (size_t c = 0; c < N_COLUMNS; c++) {
            cell(row, c, text);
            sl_buf_appendf(out, ",%s", text);
        }
        sl_buf_append(out, "\n", 1);
    }
}

/* The table: a heading line, the column headings, a line per group and the total. */
static int format_table(const json_t *doc, const char *by, const json_t *groups,
                        const json_t *total, struct sl_buf *out)
{
    size_t n_rows = json_array_size(groups) + 1; /* and the total */
    char(*cells)[N_COLUMNS][CELL] = calloc(n_rows, sizeof(*cells));
    if (cells == NULL)
        return SL_ENOMEM;
    size_t width[N_COLUMNS + 1];
    width[0] = strlen(by);
    for (size_t c = 0; c < N_COLUMNS; c++)
        width[c + 1] = strlen(columns[c].heading);
    for (size_t r = 0; r < n_rows; r++) {
        const json_t *row = r + 1 < n_rows ? json_array_get(groups, r) : total;
        width[0] = SL_MAX(width[0], strlen(json_string_value(json_object_get(row, "key"))));
        for (size_t c = 0; c < N_COLUMNS; c++) {
            cell(row, c, cells[r][c]);
            if (cells[r][c][0] == '\0')
                snprintf(cells[r][c], CELL, "-");
            width[c + 1] = SL_MAX(width[c + 1], strlen(cells[r][c]));
        }
    }
    sl_buf_appendf(out, "usage from %s to %s, by %s\n\n",
                   json_string_value(json_object_get(doc, "from")),
                   json_string_value(json_object_get(doc, "to")), by);
    sl_buf_appendf(out, "%-*s", (int)width[0], by);
    for (size_t c = 0; c < N_COLUMNS; c++)
        sl_buf_appendf(out, "  %*s", (int)width[c + 1], columns[c].heading);
    sl_buf_append(out, "\n", 1);
    for (size_t r = 0; r < n_rows; r++) {
        const json_t *row = r + 1 < n_rows ? json_array_get(groups, r) : total;
        if (r + 1 == n_rows) {
            size_t line = width[0];
            for (size_t c = 0; c < N_COLUMNS; c++)
                line += 2 + width[c + 1];
            for (size_t k = 0; k < line; k++)
                sl_buf_append(out, "-", 1);
            sl_buf_append(out, "\n", 1);
        }
        sl_buf_appendf(out, "%-*s", (int)width[0], json_string_value(json_object_get(row, "key")));
        for (size_t c = 0; c < N_COLUMNS; c++)
            sl_buf_appendf(out, "  %*s", (int)width[c + 1], cells[r][c]);
        sl_buf_append(out, "\n", 1);
    }
    free(cells);
    return SL_OK;
}

int sl_ledger_report_format(struct sl_str json, enum sl_ledger_format format, struct sl_buf *out)
{
    if (format == SL_LEDGER_JSON) {
        if (sl_buf_append_str(out, json) != SL_OK || sl_buf_append(out, "\n", 1) != SL_OK)
            return SL_ENOMEM;
        return SL_OK;
    }
    json_error_t jerr;
    json_t *doc = json_loadb(json.base, json.len, 0, &jerr);
    const json_t *groups = json_object_get(doc, "groups");
    const json_t *total = json_object_get(doc, "total");
    const char *by = json_string_value(json_object_get(doc, "by"));
    int err = SL_EINVAL;
    if (!json_is_array(groups) || !is_row(total) || by == NULL ||
        !json_is_string(json_object_get(doc, "from")) ||
        !json_is_string(json_object_get(doc, "to")))
        goto done;
    size_t i;
    const json_t *row;
    json_array_foreach(groups, i, row)
    {
        if (!is_row(row))
            goto done;
    }
    size_t before = out->len;
    if (format == SL_LEDGER_CSV) {
        format_csv(by, groups, out);
        err = SL_OK;
    } else {
        err = format_table(doc, by, groups, total, out);
    }
    if (err == SL_OK && (out->base == NULL || out->len == before))
        err = SL_ENOMEM;
done:
    json_decref(doc);
    return err;
}

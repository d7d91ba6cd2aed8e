/*
 * Budget windows in UTC: calendar days, ISO weeks (from Monday 00:00) and
 * calendar months. Pure arithmetic on days since 1970 (Howard Hinnant's
 * civil-calendar algorithms), so no time zone, locale or lock is involved.
 */
#include "ledger/internal.h"

#include <stdio.h>

#define DAY_MS INT64_C(86400000)

/* Floor division for possibly negative a (b > 0). */
static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && a < 0) ? q - 1 : q;
}

struct sl_ledger_span sl_ledger_window_span(enum sl_budget_window w, uint64_t t_ms)
{
    struct sl_ledger_span s;
    int64_t day = floor_div((int64_t)t_ms, DAY_MS);
    switch (w) {
    case SL_BUDGET_WEEK:
        /* 1970-01-01 was a Thursday: Monday-based weeks are offset by 3 days. */
        s.n = floor_div(day + 3, 7);
        s.start_ms = (s.n * 7 - 3) * DAY_MS;
        s.end_ms = s.start_ms + 7 * DAY_MS;
        break;
    case SL_BUDGET_MONTH: {
        int64_t y;
        unsigned m, d;
        sl_civil_from_days(day, &y, &m, &d);
        s.n = (y - 1970) * 12 + (int64_t)m - 1;
        s.start_ms = sl_days_from_civil(y, m, 1) * DAY_MS;
        s.end_ms =
            (m == 12 ? sl_days_from_civil(y + 1, 1, 1) : sl_days_from_civil(y, m + 1, 1)) * DAY_MS;
        break;
    }
    case SL_BUDGET_DAY:
    default:
        s.n = day;
        s.start_ms = day * DAY_MS;
        s.end_ms = s.start_ms + DAY_MS;
        break;
    }
    return s;
}

const char *sl_ledger_window_name(enum sl_budget_window w)
{
    return w == SL_BUDGET_WEEK ? "week" : w == SL_BUDGET_MONTH ? "month" : "day";
}

const char *sl_ledger_window_adjective(enum sl_budget_window w)
{
    return w == SL_BUDGET_WEEK ? "weekly" : w == SL_BUDGET_MONTH ? "monthly" : "daily";
}

/*
 * What tokens cost, from the `prices` table: prices are millionths of USD
 * per million tokens, so a count times a price is in 10^-12 USD. Counts
 * reach 2^40 and prices have no cap, so the products are summed in 128
 * bits and rounded once, to the nearest millionth.
 */
#include <string.h>

#include "config/config.h"
#include "usage/usage.h"

#define TOKENS_PER_PRICE 1000000u /* prices are per million tokens */

static unsigned __int128 add_sat(unsigned __int128 a, unsigned __int128 b)
{
    return a > ~(unsigned __int128)0 - b ? ~(unsigned __int128)0 : a + b;
}

static const struct sl_config_price *price_of(const struct sl_config *cfg, const char *model)
{
    for (size_t i = 0; i < cfg->n_prices; i++)
        if (cfg->prices[i].model && strcmp(cfg->prices[i].model, model) == 0)
            return &cfg->prices[i];
    return NULL;
}

uint64_t sl_usage_cost(const struct sl_config *cfg, const char *model, const struct sl_usage *u)
{
    if (cfg == NULL || model == NULL || u == NULL || !u->found)
        return 0;
    const struct sl_config_price *p = price_of(cfg, model);
    if (p == NULL)
        return 0;
    /* A parsed usage has cached <= prompt; a hand-made one is held to it as well. */
    uint64_t cached = SL_MIN(u->cached, u->prompt);
    /* Each product fits 128 bits exactly; only the sums can overflow (hand-made counts
     * near 2^64 at absurd prices), and they saturate. */
    unsigned __int128 sum = add_sat((unsigned __int128)(u->prompt - cached) * p->input,
                                    (unsigned __int128)cached * p->cached_input);
    sum = add_sat(sum, (unsigned __int128)u->completion * p->output);
    sum = add_sat(sum, TOKENS_PER_PRICE / 2) / TOKENS_PER_PRICE;
    return sum > UINT64_MAX ? UINT64_MAX : (uint64_t)sum;
}

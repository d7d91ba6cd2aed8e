/*
 * libFuzzer target: arbitrary bytes as a configuration file. Loading must
 * never crash, leak or take unbounded time, whatever the input.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "config/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static FILE *sink;
    struct sl_config_errors errs;
    struct sl_config *cfg = NULL;

    if (sink == NULL) {
        /* Inputs may name environment variables: give ${FUZZ} a value. */
        setenv("FUZZ", "1", 1);
        sink = fopen("/dev/null", "w");
    }
    sl_config_errors_init(&errs);
    int err = sl_config_load_buffer("fuzz.yaml", (const char *)data, size, &cfg, &errs);
    if (err == SL_OK) {
        if (cfg == NULL || cfg->workers == 0 || cfg->n_listen == 0 || errs.n != 0)
            abort();
        struct sl_config *again = sl_config_ref(cfg);
        sl_config_unref(again);
        sl_config_unref(cfg);
    } else if (cfg != NULL || (err == SL_EINVAL && errs.n == 0)) {
        abort(); /* a failure must say why */
    }
    if (sink)
        sl_config_errors_print(&errs, sink);
    sl_config_errors_dispose(&errs);
    return 0;
}

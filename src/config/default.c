/*
 * The configuration `sluice serve` uses when it is given none: the gateway on
 * its default ports, plus simulated endpoints in the same process, so that a
 * fresh checkout has something to talk to (`make run`) without any paid
 * endpoint. Production deployments always pass --config.
 */
#include "config/config.h"

static const char default_yaml[] =
    "simulator:\n"
    "  endpoints:\n"
    "    - name: sim-eastus-ptu\n"
    "      listen: 127.0.0.1:8091\n"
    "      region: eastus\n"
    "      deployments:\n"
    "        - {name: gpt-4o, model: gpt-4o, version: \"2024-08-06\", capacity: provisioned,"
    " tpm: 300000}\n"
    "        - {name: text-embedding-3-small, model: text-embedding-3-small, version: \"1\","
    " kind: embeddings, tpm: 350000}\n"
    "    - name: sim-eastus-payg\n"
    "      listen: 127.0.0.1:8092\n"
    "      region: eastus\n"
    "      deployments:\n"
    "        - {name: gpt-4o, model: gpt-4o, version: \"2024-08-06\", tpm: 150000}\n"
    "        - {name: gpt-4o-mini, model: gpt-4o-mini, version: \"2024-07-18\", tpm: 200000}\n"
    "        - {name: text-embedding-3-small, model: text-embedding-3-small, version: \"1\","
    " kind: embeddings, tpm: 350000}\n"
    "    - name: sim-swedencentral\n"
    "      listen: 127.0.0.1:8093\n"
    "      region: swedencentral\n"
    "      deployments:\n"
    "        - {name: gpt-4o, model: gpt-4o, version: \"2024-08-06\", tpm: 150000}\n"
    "        - {name: gpt-4o-mini, model: gpt-4o-mini, version: \"2024-07-18\", tpm: 200000}\n";

int sl_config_load_default(struct sl_config **out, struct sl_config_errors *errs)
{
    return sl_config_load_buffer("<default>", default_yaml, sizeof(default_yaml) - 1, out, errs);
}

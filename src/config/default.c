/*
 * The configuration `sluice serve` uses when it is given none: the gateway on
 * its default ports in front of simulated endpoints served by the same
 * process, so that a fresh checkout has something to talk to (`make run`)
 * without any paid endpoint. Its one client key is "sluice-dev-key".
 * Production deployments always pass --config.
 */
#include "config/config.h"

static const char default_yaml[] =
    "backends:\n"
    "  - {name: eastus-ptu-gpt-4o, url: \"http://127.0.0.1:8091\", api_key: sim-key,"
    " region: eastus, model: gpt-4o, version: \"2024-08-06\"}\n"
    "  - {name: eastus-payg-gpt-4o, url: \"http://127.0.0.1:8092\", api_key: sim-key,"
    " region: eastus, model: gpt-4o, version: \"2024-08-06\"}\n"
    "  - {name: swedencentral-gpt-4o, url: \"http://127.0.0.1:8093\", api_key: sim-key,"
    " region: swedencentral, model: gpt-4o, version: \"2024-08-06\"}\n"
    "  - {name: eastus-payg-gpt-4o-mini, url: \"http://127.0.0.1:8092\", api_key: sim-key,"
    " region: eastus, model: gpt-4o-mini, version: \"2024-07-18\"}\n"
    "  - {name: swedencentral-gpt-4o-mini, url: \"http://127.0.0.1:8093\", api_key: sim-key,"
    " region: swedencentral, model: gpt-4o-mini, version: \"2024-07-18\"}\n"
    "  - {name: eastus-payg-embeddings, url: \"http://127.0.0.1:8092\", api_key: sim-key,"
    " region: eastus, model: text-embedding-3-small, version: \"1\"}\n"
    /* gpt-4o: provisioned first, pay-as-you-go when it throttles (T1); gpt-4o-mini: two
     * regions sharing the load (T2). */
    "routes:\n"
    "  - name: gpt-4o\n"
    "    backends:\n"
    "      - {backend: eastus-ptu-gpt-4o, priority: 1}\n"
    "      - {backend: eastus-payg-gpt-4o, priority: 2}\n"
    "      - {backend: swedencentral-gpt-4o, priority: 2}\n"
    "  - name: gpt-4o-mini\n"
    "    backends: [{backend: eastus-payg-gpt-4o-mini}, {backend: swedencentral-gpt-4o-mini}]\n"
    "  - {name: text-embedding-3-small, backend: eastus-payg-embeddings}\n"
    "clients:\n"
    "  - name: dev\n"
    "    keys: [\"sha256:f8f3fb39d80a5e70db8cf57f3592d6ad263ea2e049f6c0cc09bf0ad75deb41c4\"]\n"
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

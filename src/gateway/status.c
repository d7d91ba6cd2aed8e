/* `sluice status`: a running gateway's /sluice/status, printed for people. */
#include "gateway/gateway.h"

int sl_gateway_print_status(const struct sl_config_addr *admin, bool json, FILE *out, FILE *err)
{
    fprintf(err, "sluice: status: not available yet\n");
    return 1;
}

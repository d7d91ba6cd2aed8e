/*
 * The front-door check: with `front_door` configured, only requests that
 * carry the expected header (e.g. Azure Front Door's X-Azure-FDID) and come
 * from the allowed networks are served. The address is the connection's own:
 * a header could be forged by anyone who reaches the listener directly.
 */
#include "proxy/internal.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include "config/schema.h"

/* Is addr (family's bytes) inside network cidr? */
static bool in_network(const char *cidr, int family, const unsigned char addr[16])
{
    unsigned char net[16];
    int net_family;
    unsigned bits;
    if (sl_cfg_parse_cidr(cidr, net, &net_family, &bits) != SL_OK || net_family != family)
        return false;
    size_t whole = bits / 8;
    if (memcmp(net, addr, whole) != 0)
        return false;
    if (bits % 8 == 0)
        return true;
    unsigned char mask = (unsigned char)(0xff << (8 - bits % 8));
    return (net[whole] & mask) == (addr[whole] & mask);
}

static bool network_ok(const struct sl_config_front_door *fd, const char *remote)
{
    unsigned char addr[16] = {0};
    int family = AF_INET;
    if (inet_pton(AF_INET, remote, addr) != 1) {
        if (inet_pton(AF_INET6, remote, addr) != 1)
            return false;
        family = AF_INET6;
        /* An IPv4 client of a dual-stack listener shows as ::ffff:a.b.c.d. */
        static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        if (memcmp(addr, mapped, sizeof(mapped)) == 0) {
            memmove(addr, addr + 12, 4);
            family = AF_INET;
        }
    }
    for (size_t i = 0; i < fd->n_networks; i++)
        if (in_network(fd->networks[i], family, addr))
            return true;
    return false;
}

bool sl_proxy_front_door_ok(const struct sl_config *cfg, struct sl_http_request *req, char *why,
                            size_t why_size)
{
    const struct sl_config_front_door *fd = &cfg->front_door;
    if (fd->header) {
        const struct sl_http_header *h =
            sl_http_find_header(&req->head, sl_str_from_cstr(fd->header));
        bool ok = false;
        for (size_t i = 0; h && i < fd->n_values && !ok; i++)
            ok = sl_str_eq(h->value, sl_str_from_cstr(fd->values[i]));
        if (!ok) {
            snprintf(why, why_size,
                     "requests must come through this gateway's front door (the %s header is "
                     "missing or has a value it does not accept)",
                     fd->header);
            return false;
        }
    }
    if (fd->n_networks && !network_ok(fd, sl_http_request_remote(req))) {
        snprintf(why, why_size,
                 "requests must come through this gateway's front door (this client's address "
                 "is not in an allowed network)");
        return false;
    }
    return true;
}

/* Private to the gateway subsystem. */
#ifndef SL_GATEWAY_INTERNAL_H
#define SL_GATEWAY_INTERNAL_H

#include "gateway/gateway.h"
#include "http/http.h"

void sl_gateway_on_public_request(struct sl_http_request *req, void *data);
void sl_gateway_on_admin_request(struct sl_http_request *req, void *data);

#endif

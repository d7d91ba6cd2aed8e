/*
 * auth: who a request comes from. A client presents a key (`api-key`, or
 * `Authorization: Bearer KEY`), checked against the hashed keys of the
 * configuration, or a JWT (`Authorization: Bearer eyJ...`) from one of the
 * configured `jwt_issuers`: signature (RS256, ES256, HS256; never `none`),
 * `iss`, `aud`, `exp` and `nbf` checked, then the issuer's `claim` names
 * the client through its `jwt_ids`.
 *
 * One struct sl_auth per loaded configuration: the issuers' keys, read from
 * their files when it is made. Immutable afterwards, so every worker uses
 * it without locks.
 */
#ifndef SL_AUTH_H
#define SL_AUTH_H

#include "config/config.h"
#include "http/parser.h"

struct sl_auth;

/* 0 and *out; SL_EINVAL with why naming the issuer and file when a key cannot be loaded;
 * SL_ENOMEM. cfg is borrowed and must outlive the auth. */
int sl_auth_new(const struct sl_config *cfg, struct sl_auth **out, struct sl_buf *why);
void sl_auth_free(struct sl_auth *a);

/* Load an issuer's key material the way sl_auth_new does, only to check it (check-config):
 * 0, or SL_EINVAL with the reason in why (never quoting a secret). */
int sl_auth_check_issuer(const struct sl_config_jwt_issuer *j, struct sl_buf *why);

/*
 * The client a request comes from: SL_OK and *client; otherwise SL_EPERM
 * with why saying what was wrong for the 401 ("the token expired at
 * 2026-11-26T10:00:00Z", "the token's audience is not accepted", "no key
 * or token was sent", ...): never a key, a token, or which clients exist.
 * now_unix_s: the time tokens are checked against.
 */
int sl_auth_identify(const struct sl_auth *a, const struct sl_http_request_head *head,
                     uint64_t now_unix_s, const struct sl_config_client **client,
                     struct sl_buf *why);

#endif

/*
 * smtp-relay — see smtp-relay.h.
 */
#include "config.h"
#include "gateway/smtp-relay.h"

#include "gateway/server-config.h"
#include "lib/address.h"

static bool is_local(const struct postern_config *cfg, const struct addr_path *rcpt)
{
    if (rcpt->postmaster)
        return true; /* "<Postmaster>" is always this host's (RFC 5321 §4.5.1) */
    if (rcpt->literal || addr_local_has_routing(rcpt))
        return false;
    return postern_config_local_domain(cfg, rcpt->domain);
}

enum relay_decision smtp_relay_check(const struct postern_config *cfg, bool trusted,
                                     bool authenticated, const struct addr_path *rcpt)
{
    if (is_local(cfg, rcpt))
        return RELAY_LOCAL;
    if (trusted || authenticated)
        return RELAY_ALLOWED;
    return RELAY_DENIED;
}

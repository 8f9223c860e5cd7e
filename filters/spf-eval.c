/*
 * spf-eval — see spf-eval.h. libspf2's entry points (SPF_request_query_*)
 * give loopback clients a pass without a look; this calls what they call
 * (SPF_server_get_record, SPF_record_interpret) itself, so every client is
 * checked. libspf2's header needs <sys/types.h>, <sys/socket.h> and
 * <netinet/in.h> first.
 */
#include "config.h"
#include "filters/spf-eval.h"

#include <sys/types.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <spf2/spf.h>

/* One check: libspf2's DNS layer and what it counts. */
struct eval {
    const struct spf_resolver *res;
    SPF_dns_server_t layer; /* hook = this */
    SPF_request_t *request;
    unsigned queries;       /* DNS questions asked */
    unsigned records;       /* records fetched (get_spf) */
    bool over_limit;        /* more than SPF_MAX_QUERIES questions */
    bool timed_out;         /* a question ran into the deadline */
    enum spf_outcome fetch; /* of the first record's fetch, when it failed */
    char problem[SPF_TEXT_MAX];
};

/* ---- names ---- */

int spf_reverse_name_parse(const char *name, struct sockaddr_storage *out)
{
    static const char v6_suffix[] = "ip6.arpa";
    unsigned o[4];
    int n = 0;

    memset(out, 0, sizeof(*out));
    if (sscanf(name, "%3u.%3u.%3u.%3u.in-addr.arpa%n", &o[3], &o[2], &o[1], &o[0], &n) == 4 &&
        n > 0 && name[n] == '\0' && o[0] < 256 && o[1] < 256 && o[2] < 256 && o[3] < 256) {
        struct sockaddr_in *sin = (struct sockaddr_in *)out;
        sin->sin_family = AF_INET;
        sin->sin_addr.s_addr = htonl(o[0] << 24 | o[1] << 16 | o[2] << 8 | o[3]);
        return 0;
    }
    if (strlen(name) != 64 + sizeof(v6_suffix) - 1 || strcmp(name + 64, v6_suffix) != 0)
        return -1;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)out;
    for (int i = 0; i < 32; i++) {
        const char *p = name + 2 * i;
        unsigned v;
        if (p[1] != '.')
            return -1;
        if (p[0] >= '0' && p[0] <= '9')
            v = (unsigned)(p[0] - '0');
        else if (p[0] >= 'a' && p[0] <= 'f')
            v = (unsigned)(p[0] - 'a' + 10);
        else
            return -1;
        /* nibble i counts from the least significant one */
        sin6->sin6_addr.s6_addr[15 - i / 2] |= (uint8_t)(i % 2 == 0 ? v : v << 4);
    }
    sin6->sin6_family = AF_INET6;
    return 0;
}

static void set_problem(struct eval *ev, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Notes the first problem of the check. */
static void set_problem(struct eval *ev, const char *fmt, ...)
{
    va_list ap;

    if (ev->problem[0] != '\0')
        return;
    va_start(ap, fmt);
    vsnprintf(ev->problem, sizeof(ev->problem), fmt, ap);
    va_end(ap);
}

/* ---- the DNS layer: answers as SPF_dns_rr_t ---- */

static SPF_dns_rr_t *rr_status(struct eval *ev, const char *domain, ns_type type, int herrno)
{
    return SPF_dns_rr_new_init(&ev->layer, domain, type, 0, herrno);
}

/* Copies an answer's records; a record that does not fit the type is left
 * out, and no record at all is NO_DATA. */
static bool printable_ascii(const char *s)
{
    for (; *s != '\0'; s++) {
        if (*s < 0x20 || *s > 0x7e)
            return false;
    }
    return true;
}

static SPF_dns_rr_t *rr_from_answer(struct eval *ev, const char *domain, ns_type type,
                                    const struct dns_bridge_answer *a)
{
    SPF_dns_rr_t *rr = rr_status(ev, domain, type, NETDB_SUCCESS);
    int n = 0;

    if (rr == NULL)
        return NULL;
    for (size_t i = 0; i < a->n; i++) {
        const void *src;
        size_t len;
        if (type == ns_t_a || type == ns_t_aaaa) {
            const struct sockaddr *sa = (const struct sockaddr *)&a->addrs[i].sa;
            if (sa->sa_family != (type == ns_t_a ? AF_INET : AF_INET6))
                continue;
            src = type == ns_t_a ? (const void *)&((const struct sockaddr_in *)sa)->sin_addr
                                 : (const void *)&((const struct sockaddr_in6 *)sa)->sin6_addr;
            len = type == ns_t_a ? sizeof(struct in_addr) : sizeof(struct in6_addr);
        } else {
            src = a->items[i];
            len = strlen(a->items[i]) + 1;
            /* SPF records and explanations are printable ASCII (RFC 7208
             * §3, §6.2); libspf2 1.2.10's macro compiler overruns its
             * stack on some that are not (found by fuzz-spf-record), so
             * such a string never reaches it */
            if (type == ns_t_txt && !printable_ascii(a->items[i]))
                continue;
        }
        if (SPF_dns_rr_buf_realloc(rr, n, len) != SPF_E_SUCCESS) {
            rr->herrno = TRY_AGAIN;
            return rr;
        }
        /* the union's strings run past their declared char[1] */
        memcpy((char *)rr->rr[n], src, len);
        n++;
    }
    rr->num_rr = n;
    if (n == 0)
        rr->herrno = NO_DATA;
    return rr;
}

static int herrno_of(enum dns_status st, ns_type type)
{
    switch (st) {
    case DNS_OK:
        return NETDB_SUCCESS;
    case DNS_NXDOMAIN:
        return HOST_NOT_FOUND;
    case DNS_NODATA:
        return NO_DATA;
    default:
        /* a failed PTR lookup means no match (§5.5); other failures are
         * temporary errors */
        return type == ns_t_ptr ? NO_DATA : TRY_AGAIN;
    }
}

static SPF_dns_rr_t *layer_lookup(SPF_dns_server_t *layer, const char *domain, ns_type type,
                                  int should_cache)
{
    struct eval *ev = layer->hook;
    struct dns_bridge_question q = {.name = domain};
    struct dns_bridge_answer a;
    SPF_dns_rr_t *rr;

    (void)should_cache; /* lib/dns has the worker's cache */
    /* RFC 7208 §7.3: an expanded name over 253 characters loses labels on
     * the left until it fits; one that cannot does not exist */
    while (strlen(q.name) > 253 && strchr(q.name, '.') != NULL)
        q.name = strchr(q.name, '.') + 1;
    if (strlen(q.name) > 253 || q.name[0] == '\0')
        return rr_status(ev, domain, type, HOST_NOT_FOUND);
    switch (type) {
    case ns_t_a:
        q.kind = DNS_BRIDGE_A;
        break;
    case ns_t_aaaa:
        q.kind = DNS_BRIDGE_AAAA;
        break;
    case ns_t_mx:
        q.kind = DNS_BRIDGE_MX;
        break;
    case ns_t_txt:
        q.kind = DNS_BRIDGE_TXT;
        break;
    case ns_t_ptr:
        q.kind = DNS_BRIDGE_PTR;
        if (spf_reverse_name_parse(domain, &q.addr) < 0)
            return rr_status(ev, domain, type, HOST_NOT_FOUND);
        break;
    default: /* type SPF (99) and anything else: never asked */
        return rr_status(ev, domain, type, NO_DATA);
    }
    if (++ev->queries > SPF_MAX_QUERIES) {
        ev->over_limit = true;
        return rr_status(ev, domain, type, TRY_AGAIN);
    }
    if (ev->res->ask(ev->res->ctx, &q, &a) < 0)
        return rr_status(ev, domain, type, TRY_AGAIN);
    ev->timed_out = ev->timed_out || a.timed_out;
    rr = a.st == DNS_OK ? rr_from_answer(ev, domain, type, &a)
                        : rr_status(ev, domain, type, herrno_of(a.st, type));
    dns_bridge_answer_free(&a);
    return rr;
}

/* ---- the record (get_spf) ---- */

/* A failed fetch: the first record's outcome is noted for spf_eval; for
 * an include or redirect libspf2 makes a temperror of SPF_E_DNS_ERROR and
 * a permerror of anything else. */
static SPF_errcode_t fetch_failed(struct eval *ev, bool first, SPF_response_t *resp,
                                  enum spf_outcome o, SPF_errcode_t code, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

static SPF_errcode_t fetch_failed(struct eval *ev, bool first, SPF_response_t *resp,
                                  enum spf_outcome o, SPF_errcode_t code, const char *fmt, ...)
{
    char msg[SPF_TEXT_MAX];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (first)
        ev->fetch = o;
    set_problem(ev, "%s", msg);
    return SPF_response_add_error(resp, code, "%s", msg);
}

static bool is_spf1(const char *txt)
{
    return strncasecmp(txt, "v=spf1", 6) == 0 && (txt[6] == ' ' || txt[6] == '\0');
}

static SPF_errcode_t layer_get_spf(SPF_server_t *server, SPF_request_t *req, SPF_response_t *resp,
                                   SPF_record_t **recordp)
{
    struct eval *ev = server->resolver->hook;
    const char *domain = req->cur_dom;
    bool first = ev->records == 0;
    SPF_dns_rr_t *rr;
    SPF_errcode_t err;
    int found = -1, count = 0;

    *recordp = NULL;
    if (++ev->records > SPF_MAX_RECORDS)
        return fetch_failed(ev, first, resp, SPF_OUT_PERMERROR, SPF_E_BIG_DNS,
                            "more than 10 include and redirect records (at %s)", domain);
    if (!spf_domain_ok(domain))
        return fetch_failed(ev, first, resp, SPF_OUT_NONE, SPF_E_NOT_SPF,
                            "\"%s\" is not a domain name", domain);
    rr = SPF_dns_lookup(server->resolver, domain, ns_t_txt, 1);
    if (rr->herrno == TRY_AGAIN) {
        SPF_dns_rr_free(rr);
        return fetch_failed(ev, first, resp, SPF_OUT_TEMPERROR, SPF_E_DNS_ERROR,
                            ev->timed_out ? "DNS timeout for %s" : "DNS failure for %s", domain);
    }
    for (int i = 0; rr->herrno == NETDB_SUCCESS && i < rr->num_rr; i++) {
        if (is_spf1(rr->rr[i]->txt)) {
            found = i;
            count++;
        }
    }
    if (count != 1) {
        SPF_dns_rr_free(rr);
        if (count > 1)
            return fetch_failed(ev, first, resp, SPF_OUT_PERMERROR, SPF_E_MULTIPLE_RECORDS,
                                "more than one SPF record for %s", domain);
        return fetch_failed(ev, first, resp, SPF_OUT_NONE, SPF_E_NOT_SPF, "no SPF record for %s",
                            domain);
    }
    err = SPF_record_compile(server, resp, recordp, rr->rr[found]->txt);
    SPF_dns_rr_free(rr);
    if (err == SPF_E_SUCCESS)
        return SPF_E_SUCCESS;
    if (*recordp != NULL) {
        SPF_record_free(*recordp);
        *recordp = NULL;
    }
    if (first)
        ev->fetch = SPF_OUT_PERMERROR;
    set_problem(ev, "%s", SPF_strerror(err));
    return err == SPF_E_DNS_ERROR ? SPF_E_SYNTAX : err; /* a bad record is permanent */
}

/* ---- the explanation (get_exp) ---- */

/* text with each space written "%_". libspf2 1.2.10 compiles a literal
 * space in a macro string wrongly (the rest comes out verbatim, its spaces
 * as '%', its macros unexpanded); "%_" is the same space (§7.1) and
 * compiles right. NULL when out of memory. */
/* the longest exp= text used: escaped it is at most twice as long, which
 * keeps its compiled form well inside libspf2's SPF_MAX_MOD_LEN (511) */
#define SPF_EXP_TEXT_MAX 100

static char *spaces_escaped(const char *text)
{
    size_t n = strlen(text), spaces = 0, o = 0;
    char *out;

    for (size_t i = 0; i < n; i++)
        spaces += text[i] == ' ';
    if ((out = malloc(n + spaces + 1)) == NULL)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        if (text[i] == ' ') {
            out[o++] = '%';
            out[o++] = '_';
        } else {
            out[o++] = text[i];
        }
    }
    out[o] = '\0';
    return out;
}

/* SPF_server_set_explanation with the spaces escaped. */
static SPF_errcode_t set_explanation(SPF_server_t *server, const char *text, SPF_response_t **errs)
{
    char *escaped = spaces_escaped(text);
    SPF_errcode_t err;

    if (escaped == NULL)
        return SPF_E_NO_MEMORY;
    err = SPF_server_set_explanation(server, escaped, errs);
    free(escaped);
    return err;
}

static SPF_errcode_t expand_macro(SPF_server_t *server, SPF_request_t *req, SPF_response_t *resp,
                                  SPF_macro_t *macro, char **bufp, size_t *buflenp)
{
    static const char lame[] = "SPF: not a permitted sender";

    if (macro == NULL) {
        char *grown = *buflenp < sizeof(lame) ? realloc(*bufp, sizeof(lame)) : *bufp;
        if (grown == NULL)
            return SPF_E_NO_MEMORY;
        if (grown != *bufp) {
            *bufp = grown;
            *buflenp = sizeof(lame);
        }
        memcpy(*bufp, lame, sizeof(lame));
        return SPF_E_SUCCESS;
    }
    /* spf_record.h: the macro's data follows the struct */
    return SPF_record_expand_data(server, req, resp, (SPF_data_t *)(macro + 1), macro->macro_len,
                                  bufp, buflenp);
}

/* The exp= target's TXT record when there is exactly one that compiles
 * (§6.2), else the default explanation. domain may point into *bufp. */
static SPF_errcode_t layer_get_exp(SPF_server_t *server, const char *domain, char **bufp,
                                   size_t *buflenp)
{
    struct eval *ev = server->resolver->hook;
    char name[DNS_NAME_MAX + 1];
    SPF_response_t *scratch = SPF_response_new(ev->request);
    SPF_macro_t *macro = NULL;
    SPF_dns_rr_t *rr;
    SPF_errcode_t err;
    char *text = NULL;

    if (scratch == NULL)
        return SPF_E_NO_MEMORY;
    snprintf(name, sizeof(name), "%s", domain);
    rr = SPF_dns_lookup(server->resolver, name, ns_t_txt, 1);
    /* a longer one gets the default: libspf2 1.2.10 compiles a macro string
     * into a stack buffer of SPF_MAX_MOD_LEN octets without checking (found
     * by fuzz-spf-record), and an explanation is one reply line for people */
    if (rr->herrno == NETDB_SUCCESS && rr->num_rr == 1 &&
        strlen(rr->rr[0]->txt) <= SPF_EXP_TEXT_MAX)
        text = spaces_escaped(rr->rr[0]->txt);
    if (text != NULL && SPF_record_compile_macro(server, scratch, &macro, text) == SPF_E_SUCCESS)
        err = expand_macro(server, ev->request, scratch, macro, bufp, buflenp);
    else
        err = expand_macro(server, ev->request, scratch, server->explanation, bufp, buflenp);
    if (macro != NULL)
        SPF_macro_free(macro);
    free(text);
    SPF_dns_rr_free(rr);
    SPF_response_free(scratch);
    return err;
}

/* ---- the check ---- */

static enum spf_outcome outcome_of(SPF_result_t r)
{
    switch (r) {
    case SPF_RESULT_PASS:
        return SPF_OUT_PASS;
    case SPF_RESULT_FAIL:
        return SPF_OUT_FAIL;
    case SPF_RESULT_SOFTFAIL:
        return SPF_OUT_SOFTFAIL;
    case SPF_RESULT_NEUTRAL:
        return SPF_OUT_NEUTRAL;
    case SPF_RESULT_NONE:
        return SPF_OUT_NONE;
    case SPF_RESULT_TEMPERROR:
        return SPF_OUT_TEMPERROR;
    default:
        return SPF_OUT_PERMERROR;
    }
}

/* The identity: the mailbox and its domain; false when there is none. */
static bool pick_identity(const struct spf_eval_in *in, struct spf_eval_out *out)
{
    const char *helo = in->helo != NULL ? in->helo : "";
    const char *sender = in->sender != NULL ? in->sender : "";
    const char *at;

    if (in->scope == SPF_SCOPE_MAILFROM && sender[0] != '\0') {
        at = strrchr(sender, '@');
        snprintf(out->identity, sizeof(out->identity), "%s", sender);
        snprintf(out->domain, sizeof(out->domain), "%s", at != NULL ? at + 1 : sender);
        return true;
    }
    if (helo[0] == '\0')
        return false;
    snprintf(out->identity, sizeof(out->identity), "postmaster@%s", helo);
    snprintf(out->domain, sizeof(out->domain), "%s", helo);
    return true;
}

static void set_client(SPF_request_t *req, const struct netaddr *client)
{
    if (netaddr_is_v4(client)) {
        struct in_addr a;
        memcpy(&a, client->a + 12, 4);
        SPF_request_set_ipv4(req, a);
    } else {
        struct in6_addr a;
        memcpy(&a, client->a, 16);
        SPF_request_set_ipv6(req, a);
    }
}

/* A server with our DNS layer, a request for the identity. */
static SPF_server_t *setup(struct eval *ev, const struct spf_eval_in *in)
{
    SPF_response_t *errs = NULL;
    SPF_server_t *server = SPF_server_new_dns(&ev->layer, 0);

    if (server == NULL)
        return NULL;
    SPF_server_set_rec_dom(server, in->receiver);
    SPF_server_set_sanitize(server, 1);
    if (in->explanation != NULL)
        set_explanation(server, in->explanation, &errs); /* load checked it */
    if (errs != NULL)
        SPF_response_free(errs);
    if ((ev->request = SPF_request_new(server)) == NULL) {
        SPF_server_free(server);
        return NULL;
    }
    set_client(ev->request, &in->client);
    if (in->helo != NULL && in->helo[0] != '\0')
        SPF_request_set_helo_dom(ev->request, in->helo);
    if (in->scope == SPF_SCOPE_MAILFROM && in->sender != NULL && in->sender[0] != '\0')
        SPF_request_set_env_from(ev->request, in->sender);
    ev->request->use_helo = in->scope == SPF_SCOPE_HELO;
    ev->request->cur_dom =
        in->scope == SPF_SCOPE_HELO ? ev->request->helo_dom : ev->request->env_from_dp;
    return server;
}

/* Runs the record; the result in out. */
static void run(struct eval *ev, SPF_server_t *server, struct spf_eval_out *out)
{
    SPF_response_t *resp = SPF_response_new(ev->request);
    SPF_record_t *record = NULL;

    if (resp == NULL || ev->request->cur_dom == NULL) {
        out->outcome = SPF_OUT_TEMPERROR;
        set_problem(ev, "%s", "out of memory");
    } else if (SPF_server_get_record(server, ev->request, resp, &record) != SPF_E_SUCCESS) {
        out->outcome = ev->fetch;
    } else {
        resp->spf_record_exp = record;
        SPF_record_interpret(record, ev->request, resp, 0);
        SPF_record_free(record);
        out->outcome = outcome_of(SPF_response_result(resp));
        if (out->outcome == SPF_OUT_FAIL && SPF_response_get_explanation(resp) != NULL)
            spf_clean_text(SPF_response_get_explanation(resp), out->explanation,
                           sizeof(out->explanation));
        if (out->outcome == SPF_OUT_PERMERROR)
            set_problem(ev, "%s", SPF_strerror(SPF_response_errcode(resp)));
    }
    if (resp != NULL)
        SPF_response_free(resp);
}

void spf_eval(const struct spf_eval_in *in, const struct spf_resolver *res,
              struct spf_eval_out *out)
{
    struct eval ev = {.res = res, .fetch = SPF_OUT_NONE};
    SPF_server_t *server;

    memset(out, 0, sizeof(*out));
    out->outcome = SPF_OUT_NONE;
    if (!pick_identity(in, out)) {
        snprintf(out->problem, sizeof(out->problem), "no HELO name");
        return;
    }
    if (!spf_domain_ok(out->domain)) {
        char name[SPF_TEXT_MAX - 32];
        spf_clean_text(out->domain, name, sizeof(name));
        snprintf(out->problem, sizeof(out->problem), "\"%s\" is not a domain name", name);
        return;
    }
    ev.layer = (SPF_dns_server_t){.lookup = layer_lookup,
                                  .get_spf = layer_get_spf,
                                  .get_exp = layer_get_exp,
                                  .name = "postern",
                                  .hook = &ev};
    if ((server = setup(&ev, in)) == NULL) {
        out->outcome = SPF_OUT_TEMPERROR;
        snprintf(out->problem, sizeof(out->problem), "out of memory");
        return;
    }
    run(&ev, server, out);
    SPF_request_free(ev.request);
    SPF_server_free(server); /* the layer has no destroy: it stays ours */
    if (ev.over_limit) {
        out->outcome = SPF_OUT_PERMERROR;
        snprintf(ev.problem, sizeof(ev.problem), "more than %d DNS queries", SPF_MAX_QUERIES);
    }
    if (out->outcome == SPF_OUT_TEMPERROR && ev.problem[0] == '\0')
        snprintf(ev.problem, sizeof(ev.problem), "%s",
                 ev.timed_out ? "DNS timeout" : "DNS failure");
    if (out->outcome != SPF_OUT_PASS && out->outcome != SPF_OUT_FAIL &&
        out->outcome != SPF_OUT_SOFTFAIL && out->outcome != SPF_OUT_NEUTRAL)
        spf_clean_text(ev.problem, out->problem, sizeof(out->problem));
    out->queries = ev.queries;
}

int spf_explanation_check(const char *text, char *error, size_t errsize)
{
    SPF_dns_server_t layer = {.name = "check"};
    SPF_server_t *server = SPF_server_new_dns(&layer, 0);
    SPF_response_t *errs = NULL;
    SPF_errcode_t err;

    if (server == NULL) {
        snprintf(error, errsize, "out of memory");
        return -1;
    }
    err = set_explanation(server, text, &errs);
    if (err != SPF_E_SUCCESS)
        snprintf(error, errsize, "%s",
                 errs != NULL && SPF_response_messages(errs) > 0
                     ? SPF_error_message(SPF_response_message(errs, 0))
                     : SPF_strerror(err));
    if (errs != NULL)
        SPF_response_free(errs);
    SPF_server_free(server);
    return err == SPF_E_SUCCESS ? 0 : -1;
}

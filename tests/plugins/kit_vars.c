/* kit_vars — a plugin that provides variables (ABI 1.3) for the
 * integration tests (test_variables.py): $kit_tier, from the X-Tier
 * request header, and $kit_crash, whose getter crashes (to see the crash
 * charged to this module). Its content handler answers with the values
 * tw_request_variable gives for the names in the query ("?host&kit_tier"). */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include <twister/twister.h>

TW_MODULE_EXPORT extern const tw_module_t twister_module_v1;

static tw_str_t kit_tier(tw_request_t *r)
{
    const tw_header_t *h = tw_request_header(r, "X-Tier");
    if (!h)
        return (tw_str_t){NULL, 0};
    /* A computed value lives in the request's pool. */
    char *v = tw_request_alloc(r, h->value.len + 6);
    if (!v)
        return (tw_str_t){NULL, 0};
    int n = snprintf(v, h->value.len + 6, "tier-%.*s", (int)h->value.len, h->value.ptr);
    return (tw_str_t){v, (size_t)n};
}

static tw_str_t kit_crash(tw_request_t *r)
{
    (void)r;
    raise(SIGSEGV);
    return (tw_str_t){"", 0};
}

static const tw_variable_t kit_variables[] = {
    {"kit_tier", kit_tier, 0},
    {"kit_crash", kit_crash, 0},
    {NULL, NULL, 0},
};

static int kit_content(tw_request_t *r)
{
    char out[4096];
    size_t used = 0;
    tw_str_t q = tw_request_query(r);
    const char *p = q.ptr, *end = q.ptr + q.len;
    while (p < end && used < sizeof out - 200) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        size_t len = amp ? (size_t)(amp - p) : (size_t)(end - p);
        char name[64];
        snprintf(name, sizeof name, "%.*s", (int)len, p);
        tw_str_t v;
        int rc = tw_request_variable(r, name, &v);
        if (rc == 1)
            used += (size_t)snprintf(out + used, sizeof out - used, "%s=[%.*s]\n", name,
                                     (int)(v.len > 120 ? 120 : v.len), v.ptr);
        else
            used += (size_t)snprintf(out + used, sizeof out - used, "%s=%s\n", name,
                                     rc == 0 ? "none" : "unknown");
        p = amp ? amp + 1 : end;
    }
    return tw_response_send(r, 200, "text/plain", out, used) == 0 ? TW_DONE : TW_ERROR;
}

TW_MODULE_EXPORT const tw_module_t twister_module_v1 = {
    TW_MODULE_HEADER,
    .name = "kit_vars",
    .version = "1.0.0",
    .description = "provides $kit_tier and $kit_crash; answers tw_request_variable lookups",
    .content = kit_content,
    .variables = kit_variables,
};

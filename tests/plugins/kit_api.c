/* kit_api — exercises the ABI 1.2 request and worker API for the
 * integration tests: answers with what tw_request_arg, tw_request_cookie,
 * tw_request_capture, tw_request_worker and its per-worker state give,
 * logs through tw_request_log, and declares the methods it accepts. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <twister/twister.h>

TW_MODULE_EXPORT extern const tw_module_t twister_module_v1;

typedef struct {
    unsigned long served; /* requests this worker answered */
} worker_state_t;

static int kit_configure(tw_configure_t *cf, tw_conf_scope_t scope, const tw_conf_node_t *node,
                         void **conf, tw_conf_error_t *err)
{
    (void)conf;
    if (scope != TW_SCOPE_ROUTE)
        return 0;
    static const char *const methods[] = {"GET", "POST", NULL};
    if (tw_configure_set_methods(cf, methods) != 0)
        return tw_conf_error(err, node, "kit_api: tw_configure_set_methods: %s", strerror(errno));
    return 0;
}

static int kit_init_worker(tw_worker_t *w, tw_conf_error_t *err)
{
    worker_state_t *s = calloc(1, sizeof *s);
    if (!s || tw_worker_set_ctx(w, &twister_module_v1, s) != 0) {
        free(s);
        snprintf(err->message, sizeof err->message, "kit_api: no per-worker state");
        return -1;
    }
    return 0;
}

static void kit_exit_worker(tw_worker_t *w)
{
    free(tw_worker_ctx(w, &twister_module_v1));
    tw_worker_set_ctx(w, &twister_module_v1, NULL);
}

static void put_str(char **p, char *end, const char *label, int found, tw_str_t v)
{
    int n = found == 1 ? snprintf(*p, (size_t)(end - *p), "%s=[%.*s]\n", label, (int)v.len, v.ptr)
            : found == 0
                ? snprintf(*p, (size_t)(end - *p), "%s=none\n", label)
                : snprintf(*p, (size_t)(end - *p), "%s=error %s\n", label, strerror(errno));
    if (n > 0 && n < end - *p)
        *p += n;
}

static int kit_content(tw_request_t *r)
{
    char body[2048], *p = body, *end = body + sizeof body;
    tw_str_t v;
    int rc = tw_request_arg(r, "q", &v);
    put_str(&p, end, "arg q", rc, v);
    rc = tw_request_arg(r, "a b", &v);
    put_str(&p, end, "arg a b", rc, v);
    rc = tw_request_cookie(r, "sid", &v);
    put_str(&p, end, "cookie sid", rc, v);
    for (unsigned i = 0; i < 3; i++) {
        char label[16];
        snprintf(label, sizeof label, "capture %u", i);
        rc = tw_request_capture(r, i, &v);
        put_str(&p, end, label, rc, v);
    }
    tw_worker_t *w = tw_request_worker(r);
    worker_state_t *s = tw_worker_ctx(w, &twister_module_v1);
    if (!w || !s)
        return TW_ERROR;
    s->served++;
    p += snprintf(p, (size_t)(end - p), "worker %u generation %u served %lu\n", tw_worker_index(w),
                  tw_worker_generation(w), s->served);
    tw_request_log(r, TW_LOG_WARN, "kit_api says hello");
    return tw_response_send(r, 200, "text/plain", body, (size_t)(p - body)) == 0 ? TW_DONE
                                                                                 : TW_ERROR;
}

TW_MODULE_EXPORT const tw_module_t twister_module_v1 = {
    TW_MODULE_HEADER,
    .name = "kit_api",
    .version = "1.0.0",
    .description = "test plugin for the ABI 1.2 request and worker API",
    .configure = kit_configure,
    .init_worker = kit_init_worker,
    .exit_worker = kit_exit_worker,
    .content = kit_content,
};

/* route.h — what the HTTP engine needs to know about the route a request
 * matched. The router (router.c) owns routes and embeds one of these in
 * each; the generation fills in the module parts once the worker has run
 * the modules' configure hooks. */
#ifndef TWISTER_ROUTE_H
#define TWISTER_ROUTE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "twister/http.h"
#include "twister/module.h"

typedef struct tw_http_route {
    const char *name;           /* for logs: "servers[0].routes[2] (/hello)" */
    const char *label;          /* the route's pattern as written: "/hello" */
    const char *server_label;   /* its server's name for logs */
    const tw_module_t *handler; /* the module whose content handler answers */
    tw_handler_fn content;      /* handler->content, cached */
    void **module_conf;         /* per module index: its TW_SCOPE_ROUTE conf or NULL */
    uint64_t body_limit;        /* max request body bytes for this route */
    const char *const *methods; /* allowed methods, NULL-terminated; NULL: any */
    const char *allow;          /* "GET, HEAD" for 405 answers; NULL if methods is NULL */
    bool satisfy_any;           /* `satisfy: any`: one passing ACCESS handler is enough */
    uint64_t drain_keep_ms;     /* `drain: { keep }`: how long a request of this route
                                   may run on after its generation began to drain
                                   (0: timeouts.shutdown bounds it) */
    bool methods_declared;      /* methods came from the handler module
                                   (tw_configure_set_methods): the core answers
                                   OPTIONS with allow instead of refusing it */
} tw_http_route_t;

#endif

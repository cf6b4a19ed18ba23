/* twister/variables.h — named per-request values ($host, $uri, ...) and
 * the templates that use them (since ABI 1.3).
 *
 * One registry serves every module, so that "$host" means the same thing
 * in a redirect, a header, a log line and a proxy's hash key, and a
 * variable one module provides ($realip_remote_addr) is usable in all of
 * them. The core provides the variables listed in modules/README.md
 * ("Variables"); a module adds its own with the descriptor's `variables`
 * table:
 *
 *     static tw_str_t user_tier(tw_request_t *r) { ... }
 *     static const tw_variable_t my_variables[] = {
 *         {"user_tier", user_tier, 0},
 *         {NULL, NULL, 0},
 *     };
 *     ... .variables = my_variables, ...
 *
 * A template is compiled once, at configure time, into literal and
 * variable pieces (an unknown name is a config error there, with its
 * file:line:column), so a request only calls getters and copies bytes. */
#ifndef TWISTER_VARIABLES_H
#define TWISTER_VARIABLES_H

#include <stddef.h>

#include "twister/conf.h"
#include "twister/http.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tw_configure tw_configure_t;

/* A variable's value for r. Return {NULL, 0} when it has none (a template
 * then inserts nothing, a log line "-"); an empty string is a value. The
 * bytes must stay valid until the request ends: the request's pool, the
 * configuration, or static memory. Called in the worker, for any request
 * of any route, so it must not assume its module's route conf is set. */
typedef tw_str_t (*tw_variable_fn)(tw_request_t *r);

/* Flags of a variable. */
enum {
    /* The value holds decoded bytes (a path, a regex group of one), so a
     * URL template percent-encodes it; other values go in as they are. */
    TW_VARIABLE_DECODED = 1u << 0,
};

/* One variable a module provides; a table of them ends with a NULL name. */
typedef struct tw_variable {
    const char *name; /* without '$': a letter or '_', then letters, digits, '_' */
    tw_variable_fn get;
    unsigned flags; /* TW_VARIABLE_* */
} tw_variable_t;

/* How tw_template_expand writes variable values (literal text is always
 * copied as it is). */
typedef enum {
    TW_TEMPLATE_TEXT = 0, /* values as they are, none for a missing one */
    TW_TEMPLATE_URL = 1,  /* TW_VARIABLE_DECODED values percent-encoded */
    TW_TEMPLATE_LOG = 2,  /* '"', '\\', controls and bytes >= 0x7f as \xHH
                             (nginx's log escaping); "-" for a missing value */
} tw_template_mode_t;

typedef struct tw_template tw_template_t;

/* Compiles text, where "$name" is a variable (the longest run of letters,
 * digits and '_' after the '$'; "$1".."$9" are one digit) and any other
 * '$' is literal, into generation memory. For use in a configure hook;
 * node is where text came from, for the error. Returns the template, or
 * NULL after filling err (an unknown variable, naming the known ones; out
 * of memory). */
tw_template_t *tw_template_compile(tw_configure_t *cf, const char *text, const tw_conf_node_t *node,
                                   tw_conf_error_t *err);
/* The text the template was compiled from (generation memory). */
const char *tw_template_text(const tw_template_t *t);
/* True if the template holds no variable (its value is its text). */
bool tw_template_is_literal(const tw_template_t *t);
/* True if the template starts with a variable rather than literal text
 * (a redirect must then keep "//evil.example" from the request from
 * becoming a protocol-relative URL). */
bool tw_template_starts_with_variable(const tw_template_t *t);
/* Expands t for r into the request's pool, NUL-terminated (a literal
 * template returns its text without copying); *len gets the length if len
 * is not NULL. Returns NULL with ENOMEM. */
const char *tw_template_expand(tw_request_t *r, const tw_template_t *t, tw_template_mode_t mode,
                               size_t *len);
/* The value of the variable called name (without '$', e.g. "host" or
 * "http_user_agent") for r, looked up by name on each call (a template is
 * faster). Returns 1 with *value set, 0 if it has no value for r (*value
 * {NULL, 0}), or -1 with ENOENT for a name no loaded module or the core
 * provides, ENOMEM. */
int tw_request_variable(tw_request_t *r, const char *name, tw_str_t *value);

/* The request's id: 32 random hex digits made on first use (nginx's
 * $request_id), or the one tw_request_set_id gave; the string lives as
 * long as the request. Returns "" only when memory runs out. */
const char *tw_request_id(tw_request_t *r);
/* Makes id (copied; 1..64 letters, digits, '-', '_' or '.') the
 * request's id, e.g. an X-Request-Id a trusted client sent. Errors:
 * EINVAL for another id, ENOMEM. */
int tw_request_set_id(tw_request_t *r, const char *id, size_t len);

#ifdef __cplusplus
}
#endif
#endif

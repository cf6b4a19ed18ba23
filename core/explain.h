/* explain.h — `twister --explain METHOD URL`: how the configuration a
 * runtime was built from would handle one request, without sending it.
 * Which listener, server and route match and why (with config lines),
 * whether the route accepts the method, the handlers of every phase and
 * both filter chains in the order they run, and the module settings in
 * effect. It answers "why did my route not match" in one command. */
#ifndef TWISTER_EXPLAIN_H
#define TWISTER_EXPLAIN_H

#include <stdio.h>

#include "runtime.h"

/* Explains METHOD URL (an absolute "http://host[:port]/path?query" or an
 * origin-form "/path?query", which then goes to the default server of the
 * first listener) against the runtime rt of generation g, to out. Returns
 * 0, or 1 after printing why the request would be refused before any
 * route is looked at (a URL the parser rejects: its status). */
int tw_explain(tw_runtime_t *rt, const tw_generation_t *g, const char *method, const char *url,
               FILE *out);

#endif

/* twister/testing.h — libtwister-test: a plugin's unit tests, in process.
 *
 * A test server loads a YAML config string and the plugin .so files it
 * names, runs every configure, register_phases and init_worker hook, and
 * serves connections that are one end of a socketpair inside the process:
 * the real HTTP/1 parser, phase table, filters and modules answer, and only
 * the socket and the clock are the test's. Nothing forks, nothing binds a
 * port, and the clock is manual: time moves only when tw_test_advance says,
 * so timeouts and plugin timers fire exactly then (the Date header reads
 * 2026-01-01T00:00:00Z plus the time advanced).
 *
 * Build a test with  cc t.c $(pkg-config --cflags --libs twister-test)
 * (with check or without). One test server at a time per process: the
 * error log it captures is per process. Functions returning int return 0
 * on success and -1 with errno set on failure. Objects a function returns
 * belong to the server and live until tw_test_server_free unless the
 * comment says otherwise. */
#ifndef TWISTER_TESTING_H
#define TWISTER_TESTING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <twister/loop.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tw_test_server tw_test_server_t;
typedef struct tw_test_conn tw_test_conn_t;
typedef struct tw_test_response tw_test_response_t;

/* ---- the server ---------------------------------------------------------- */

/* A test server not yet started, with a fresh temporary directory (see
 * tw_test_dir). Returns NULL with errno set (ENOMEM, mkdtemp's errors). */
tw_test_server_t *tw_test_server_create(void);
/* The server's temporary directory (absolute, removed with the server).
 * In the YAML given to tw_test_server_start, "$TW_TEST_DIR" stands for it. */
const char *tw_test_dir(const tw_test_server_t *s);
/* Writes len bytes of data to the file relpath beneath tw_test_dir,
 * creating its parent directories (for a static root, an htpasswd...). */
int tw_test_write_file(tw_test_server_t *s, const char *relpath, const void *data, size_t len);
/* Starts s with the config yaml (NUL-terminated, copied): "$TW_TEST_DIR"
 * is replaced by tw_test_dir, relative paths are relative to the current
 * directory, bare module names are looked up in `module_dir:`, else
 * $TWISTER_MODULE_DIR, else the installed module directory. Listeners are
 * never bound; `error_log:` is replaced by a capture (tw_test_error_log).
 * Returns 0, or -1 with the config error (file:line:col, module) in err
 * (errlen bytes, may be 0) and tw_test_server_error. */
int tw_test_server_start(tw_test_server_t *s, const char *yaml, char *err, size_t errlen);
/* tw_test_server_create + tw_test_server_start. Returns NULL with the
 * reason in err (errlen bytes, may be 0). */
tw_test_server_t *tw_test_server_new(const char *yaml, char *err, size_t errlen);
/* The last error of tw_test_server_start ("" if none). */
const char *tw_test_server_error(const tw_test_server_t *s);
/* Closes every connection, runs the modules' exit_worker hooks, frees
 * everything s owns and removes its temporary directory. NULL is a no-op. */
void tw_test_server_free(tw_test_server_t *s);

/* ---- running and time ----------------------------------------------------- */

/* Runs the loop until nothing is left to do now: no callback, fd event
 * or due timer, and no byte in flight either way (work queued with
 * tw_loop_queue_work is waited for). Time does not move. Returns 0, or -1
 * with EBUSY if it did not settle within 100000 iterations (a callback
 * that reschedules itself forever). */
int tw_test_run(tw_test_server_t *s);
/* One loop iteration without waiting, then moves bytes between the
 * sockets once: to watch a request step by step. Returns how many
 * callbacks, events, timers and transfers ran (0: idle), -1 on error. */
int tw_test_step(tw_test_server_t *s);
/* Advances the manual clock by ms, stopping at every timer deadline on
 * the way to run what is due in order, then runs as tw_test_run. Returns
 * as tw_test_run. */
int tw_test_advance(tw_test_server_t *s, uint64_t ms);
/* Milliseconds advanced since the server was created. */
uint64_t tw_test_now(const tw_test_server_t *s);
/* The server's loop (a test may add its own timers and callbacks). */
tw_loop_t *tw_test_loop(tw_test_server_t *s);
/* Connections the server holds open (including ones whose client left
 * while a handler still holds the request). */
size_t tw_test_connections(const tw_test_server_t *s);

/* ---- connections ------------------------------------------------------------ */

/* A new client connection on the first listener, from 127.0.0.1. Returns
 * NULL with errno set. */
tw_test_conn_t *tw_test_connect(tw_test_server_t *s);
/* The same from the IPv4 or IPv6 address peer (what tw_request_peer and
 * $remote_addr see), on the listener_index-th distinct `listen:` address
 * in config order (0: the first). NULL with EINVAL for a bad address or
 * index. */
tw_test_conn_t *tw_test_connect_from(tw_test_server_t *s, const char *peer, size_t listener_index);
/* Queues len raw bytes for the server (copied); they are written as the
 * loop runs. A chunk that begins with "HEAD " marks its response as one
 * without a body. Returns 0, -1 with EPIPE after tw_test_client_close. */
int tw_test_send(tw_test_conn_t *c, const void *data, size_t len);
/* Queues a request built from parts: "METHOD target HTTP/1.1", Host: test
 * (unless headers has a Host), each of headers (a NULL-terminated array of
 * "Name: value" strings, or NULL), Content-Length when body is not NULL
 * (unless headers frames the body), and body_len bytes of body. */
int tw_test_send_request(tw_test_conn_t *c, const char *method, const char *target,
                         const char *const *headers, const void *body, size_t body_len);
/* The next complete response on c that was not returned yet (interim 1xx
 * responses count), or NULL if none is complete yet. */
tw_test_response_t *tw_test_response(tw_test_conn_t *c);
/* Every byte the server wrote on c so far (*len its count; NUL-terminated). */
const char *tw_test_received(const tw_test_conn_t *c, size_t *len);
/* True once the server closed its end of c. */
bool tw_test_closed(const tw_test_conn_t *c);
/* The client goes away: closes its end at once (whatever the server was
 * doing with the request). c stays valid, tw_test_send fails with EPIPE. */
void tw_test_client_close(tw_test_conn_t *c);

/* ---- one-shot requests ------------------------------------------------------- */

/* Sends len raw bytes on a new connection, runs, and returns the first
 * response, or NULL if none came yet (a handler suspended: advance the
 * clock, then ask tw_test_response(tw_test_last_conn(s))). */
tw_test_response_t *tw_test_request(tw_test_server_t *s, const void *raw, size_t len);
/* tw_test_send_request on a new connection, runs, and returns the first
 * response, or NULL if none came yet. */
tw_test_response_t *tw_test_fetch(tw_test_server_t *s, const char *method, const char *target,
                                  const char *const *headers, const void *body, size_t body_len);
/* The connection the last tw_test_request or tw_test_fetch opened (NULL
 * before the first). */
tw_test_conn_t *tw_test_last_conn(tw_test_server_t *s);

/* ---- responses --------------------------------------------------------------- */

/* The status code (200, 404, 100 ...). */
int tw_test_response_status(const tw_test_response_t *r);
/* The value of the first header named name (any case), NUL-terminated,
 * or NULL if there is none. */
const char *tw_test_response_header(const tw_test_response_t *r, const char *name);
/* The value of the index-th header named name (from 0), or NULL. */
const char *tw_test_response_header_at(const tw_test_response_t *r, const char *name, size_t index);
/* The body, de-chunked (*len its size if len is not NULL; NUL-terminated). */
const char *tw_test_response_body(const tw_test_response_t *r, size_t *len);
/* The exact bytes of the response on the wire, head and framed body. */
const char *tw_test_response_raw(const tw_test_response_t *r, size_t *len);

/* ---- logs and files ---------------------------------------------------------- */

/* Everything the error log received since the server started, one line
 * per event as the server writes it (NUL-terminated, *len its size if len
 * is not NULL). Valid until the next call. */
const char *tw_test_error_log(tw_test_server_t *s, size_t *len);
/* The contents of the file relpath beneath tw_test_dir (an access log),
 * NUL-terminated, in memory the caller frees with free(); NULL with errno
 * set if it cannot be read. */
char *tw_test_read_file(const tw_test_server_t *s, const char *relpath, size_t *len);

#ifdef __cplusplus
}
#endif
#endif

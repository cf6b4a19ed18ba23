/* proxy_protocol.h — the PROXY protocol header (HAProxy's, versions 1 and
 * 2) that an L4 load balancer sends before the client's bytes, naming the
 * client it accepted. A pure parser: bytes in, the header's length and the
 * client's address out; the HTTP/1 connection (h1_conn.c) calls it before
 * parsing a request on listeners with the proxy_protocol flag. */
#ifndef TWISTER_PROXY_PROTOCOL_H
#define TWISTER_PROXY_PROTOCOL_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

/* Version 1 is one text line of at most 107 bytes with its CRLF. */
#define TW_PROXY_V1_MAX 107
/* Version 2: the 16-byte fixed part and at most this many bytes of
 * addresses and TLVs (HAProxy sends a few hundred at most). */
#define TW_PROXY_V2_MAX_PAYLOAD 4096

typedef enum {
    TW_PROXY_ERROR = -1, /* not a valid PROXY header: close the connection */
    TW_PROXY_AGAIN = 0,  /* a valid prefix: more bytes are needed */
    TW_PROXY_DONE = 1,   /* a whole header */
} tw_proxy_result_t;

typedef struct {
    size_t length;                  /* the header's bytes, to skip */
    bool has_source;                /* false: LOCAL, UNKNOWN or a non-IP family */
    struct sockaddr_storage source; /* the client, with its port */
    socklen_t source_len;
    const char *error; /* why, for TW_PROXY_ERROR (a static string) */
} tw_proxy_header_t;

/* Parses the PROXY header at the start of data (len bytes so far). */
tw_proxy_result_t tw_proxy_parse(const char *data, size_t len, tw_proxy_header_t *out);

#endif

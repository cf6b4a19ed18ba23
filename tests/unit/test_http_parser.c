/* test_http_parser.c — the request head parser, the chunked decoder and
 * path normalisation: tables of cases, each run on the whole input, on
 * every split into two calls and byte by byte (each call on a buffer of
 * exactly the bytes passed, so that ASan sees any read past them). */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http_parser.h"

/* ---- helpers -------------------------------------------------------------- */

#define AGAIN 1 /* in .expect: the parser wants more bytes */

typedef struct {
    int line;
    const char *in;   /* the head (or the bytes that make it fail) */
    size_t len;       /* of in, when it holds NUL bytes (0: strlen) */
    const char *rest; /* bytes after the head: a body, the next request */
    int expect;       /* 0 for DONE, AGAIN, or the error status */
    const char *method, *target, *path, *query, *host;
    int version;
    int body;
    uint64_t cl;
    int ka;
    int nfields;
    int cont;                         /* expect_continue */
    size_t rl_max, hdr_max, nhdr_max; /* limits; 0: the defaults */
    bool filter;                      /* with a method filter accepting PROPFIND and MKCOL */
} req_case_t;

#define D(in_, m_, t_, p_, q_, h_, v_, b_, cl_, ka_, nf_, ...)                                     \
    {                                                                                              \
        .line = __LINE__, .in = in_, .expect = 0, .method = m_, .target = t_, .path = p_,          \
        .query = q_, .host = h_, .version = v_, .body = b_, .cl = cl_, .ka = ka_, .nfields = nf_,  \
        __VA_ARGS__                                                                                \
    }
#define E(in_, st_, ...)                                                                           \
    {                                                                                              \
        .line = __LINE__, .in = in_, .expect = st_, __VA_ARGS__                                    \
    }
/* for inputs with NUL bytes */
#define EN(in_, st_)                                                                               \
    {                                                                                              \
        .line = __LINE__, .in = in_, .len = sizeof(in_) - 1, .expect = st_                         \
    }

#define NONE TW_BODY_NONE
#define LEN TW_BODY_LENGTH
#define CHK TW_BODY_CHUNKED

/* common request lines and fields */
#define GET11 "GET / HTTP/1.1\r\n"
#define POST11 "POST /p HTTP/1.1\r\n"
#define HOST "Host: h\r\n"
#define END "\r\n"
/* a valid HTTP/1.1 GET / with Host: h and the given extra field lines */
#define G(fields) GET11 HOST fields END
#define P(fields) POST11 HOST fields END

static bool filter_fn(const char *m, size_t n, void *arg)
{
    (void)arg;
    return (n == 8 && memcmp(m, "PROPFIND", 8) == 0) || (n == 5 && memcmp(m, "MKCOL", 5) == 0);
}

static const req_case_t req_cases[] = {
    /* ---- basics ---- */
    D(G(""), "GET", "/", "/", "", "h", 11, NONE, 0, 1, 1),
    D(GET11 "Host: example.com\r\nAccept: */*\r\nUser-Agent: t/1.0\r\n\r\n", "GET", "/", "/", "",
      "example.com", 11, NONE, 0, 1, 3),
    D("GET /a/b?x=1&y=2 HTTP/1.1\r\n" HOST END, "GET", "/a/b?x=1&y=2", "/a/b", "x=1&y=2", "h", 11,
      NONE, 0, 1, 1),
    D("GET /? HTTP/1.1\r\n" HOST END, "GET", "/?", "/", "", "h", 11, NONE, 0, 1, 1),
    D("GET /a?b?c HTTP/1.1\r\n" HOST END, "GET", "/a?b?c", "/a", "b?c", "h", 11, NONE, 0, 1, 1),
    D("GET /a%20b/%2e%2E/c?q=%zz HTTP/1.1\r\n" HOST END, "GET", "/a%20b/%2e%2E/c?q=%zz",
      "/a%20b/%2e%2E/c", "q=%zz", "h", 11, NONE, 0, 1, 1),
    D("GET /!$&'()*+,;=:@-._~[]\"<>\\^`{|} HTTP/1.1\r\n" HOST END, "GET",
      "/!$&'()*+,;=:@-._~[]\"<>\\^`{|}", "/!$&'()*+,;=:@-._~[]\"<>\\^`{|}", "", "h", 11, NONE, 0, 1,
      1),
    D("GET // HTTP/1.1\r\n" HOST END, "GET", "//", "//", "", "h", 11, NONE, 0, 1, 1),
    D("GET / HTTP/1.0\r\n\r\n", "GET", "/", "/", "", "", 10, NONE, 0, 0, 0),
    D("GET / HTTP/1.0\r\nHost: h\r\n\r\n", "GET", "/", "/", "", "h", 10, NONE, 0, 0, 1),
    D("GET / HTTP/1.2\r\n" HOST END, "GET", "/", "/", "", "h", 11, NONE, 0, 1, 1),
    D("GET / HTTP/1.9\r\n" HOST END, "GET", "/", "/", "", "h", 11, NONE, 0, 1, 1),
    D(G(""), "GET", "/", "/", "", "h", 11, NONE, 0, 1, 1, .rest = "GET / HTTP/1.1\r\n"),
    /* ---- methods ---- */
    D("HEAD / HTTP/1.1\r\n" HOST END, "HEAD", "/", "/", "", "h", 11, NONE, 0, 1, 1),
    D("POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\n", "POST", "/p", "/p", "", "h", 11,
      LEN, 5, 1, 2, .rest = "hello"),
    D("PUT /p HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n", "PUT", "/p", "/p", "", "h", 11,
      LEN, 0, 1, 2),
    D("DELETE /p HTTP/1.1\r\n" HOST END, "DELETE", "/p", "/p", "", "h", 11, NONE, 0, 1, 1),
    D("OPTIONS * HTTP/1.1\r\n" HOST END, "OPTIONS", "*", "*", "", "h", 11, NONE, 0, 1, 1),
    D("OPTIONS /x HTTP/1.1\r\n" HOST END, "OPTIONS", "/x", "/x", "", "h", 11, NONE, 0, 1, 1),
    D("TRACE / HTTP/1.1\r\n" HOST END, "TRACE", "/", "/", "", "h", 11, NONE, 0, 1, 1),
    D("PATCH /p HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n", "PATCH", "/p", "/p", "",
      "h", 11, CHK, 0, 1, 2),
    D("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", "CONNECT",
      "example.com:443", "", "", "example.com:443", 11, NONE, 0, 1, 1),
    D("CONNECT [::1]:8443 HTTP/1.1\r\nHost: x\r\n\r\n", "CONNECT", "[::1]:8443", "", "",
      "[::1]:8443", 11, NONE, 0, 1, 1),
    D("CONNECT 10.0.0.1:80 HTTP/1.1\r\nHost: 10.0.0.1:80\r\n\r\n", "CONNECT", "10.0.0.1:80", "", "",
      "10.0.0.1:80", 11, NONE, 0, 1, 1),
    D("PROPFIND /d HTTP/1.1\r\n" HOST END, "PROPFIND", "/d", "/d", "", "h", 11, NONE, 0, 1, 1,
      .filter = true),
    D("MKCOL /d HTTP/1.1\r\n" HOST END, "MKCOL", "/d", "/d", "", "h", 11, NONE, 0, 1, 1,
      .filter = true),
    D(G(""), "GET", "/", "/", "", "h", 11, NONE, 0, 1, 1, .filter = true), /* known: always */
    E("FOO / HTTP/1.1\r\n" HOST END, 501),
    E("PROPFIND /d HTTP/1.1\r\n" HOST END, 501),
    E("BREW /d HTTP/1.1\r\n" HOST END, 501, .filter = true),
    E("get / HTTP/1.1\r\n" HOST END, 501),
    E("Get / HTTP/1.1\r\n" HOST END, 501),
    E("GETS / HTTP/1.1\r\n" HOST END, 501),
    E("M-SEARCH * HTTP/1.1\r\n" HOST END, 400), /* '*' is OPTIONS only */
    E("G@T / HTTP/1.1\r\n" HOST END, 400),
    E("GE(T / HTTP/1.1\r\n" HOST END, 400),
    E("GET\t/ HTTP/1.1\r\n" HOST END, 400),
    E(" GET / HTTP/1.1\r\n" HOST END, 400),
    E("\"GET\" / HTTP/1.1\r\n" HOST END, 400),
    E("GE\x80T / HTTP/1.1\r\n" HOST END, 400),
    EN("GET\x00 / HTTP/1.1\r\n" HOST END, 400),
    /* ---- leading empty lines ---- */
    D("\r\n" G(""), "GET", "/", "/", "", "h", 11, NONE, 0, 1, 1),
    D("\r\n\r\n" G(""), "GET", "/", "/", "", "h", 11, NONE, 0, 1, 1),
    D("\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n" G(""), "GET", "/", "/", "", "h", 11, NONE, 0, 1, 1),
    E("\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n" G(""), 400),
    E("\n" G(""), 400),
    E("\r\r\n" G(""), 400),
    E("\r\n \r\n" G(""), 400),
    /* ---- request line spacing and version ---- */
    E("GET  / HTTP/1.1\r\n" HOST END, 400),
    E("GET /  HTTP/1.1\r\n" HOST END, 400),
    E("GET / HTTP/1.1 \r\n" HOST END, 400),
    E("GET /\tHTTP/1.1\r\n" HOST END, 400),
    E("GET / HTTP/1.1\t\r\n" HOST END, 400),
    E("GET /\r\n" HOST END, 400),
    E("GET\r\n" HOST END, 400),
    E("GET / \r\n" HOST END, 400),
    E("GET / http/1.1\r\n" HOST END, 400),
    E("GET / Http/1.1\r\n" HOST END, 400),
    E("GET / HTTP/1.10\r\n" HOST END, 400),
    E("GET / HTTP/01.1\r\n" HOST END, 400),
    E("GET / HTTP/1\r\n" HOST END, 400),
    E("GET / HTTP/11\r\n" HOST END, 400),
    E("GET / HTTP/1.x\r\n" HOST END, 400),
    E("GET / HTTP 1.1\r\n" HOST END, 400),
    E("GET / HTTP/1.1 extra\r\n" HOST END, 400),
    E("GET / HTTP/2.0\r\n" HOST END, 505),
    E("GET / HTTP/3.0\r\n" HOST END, 505),
    E("GET / HTTP/9.9\r\n" HOST END, 505),
    E("GET / HTTP/0.9\r\n" HOST END, 505),
    E("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505),
    /* ---- line endings ---- */
    E("GET / HTTP/1.1\n" HOST END, 400),
    E("GET / HTTP/1.1\r\nHost: h\n\r\n", 400),
    E("GET / HTTP/1.1\r\nHost: h\r\n\n", 400),
    E("GET / HTTP/1.1\rHost: h\r\n\r\n", 400),
    E("GET / HTTP/1.1\r\nHost: h\rX: y\r\n\r\n", 400),
    E("GET / HTTP/1.1\r\nHost: h\r\n\rX", 400),
    E("GET / HTTP/1.1\r\nHost: h\r\r\n\r\n", 400),
    E("GET / HTTP/1.1\r\n\nHost: h\r\n\r\n", 400),
    /* ---- request-target characters ---- */
    E("GET /a\x01 HTTP/1.1\r\n" HOST END, 400),
    E("GET /a\x7f HTTP/1.1\r\n" HOST END, 400),
    E("GET /\xc3\xa9 HTTP/1.1\r\n" HOST END, 400),
    E("GET /a\x80 HTTP/1.1\r\n" HOST END, 400),
    E("GET /a#frag HTTP/1.1\r\n" HOST END, 400),
    E("GET /a?b#c HTTP/1.1\r\n" HOST END, 400),
    E("GET /a\tb HTTP/1.1\r\n" HOST END, 400),
    EN("GET /a\x00 HTTP/1.1\r\n" HOST END, 400),
    E("GET /a\rb HTTP/1.1\r\n" HOST END, 400),
    /* ---- target forms ---- */
    E("GET * HTTP/1.1\r\n" HOST END, 400),
    E("OPTIONS *x HTTP/1.1\r\n" HOST END, 400),
    E("OPTIONS ** HTTP/1.1\r\n" HOST END, 400),
    E("GET example.com:80 HTTP/1.1\r\n" HOST END, 400),
    E("GET a/b HTTP/1.1\r\n" HOST END, 400),
    E("GET ?a HTTP/1.1\r\n" HOST END, 400),
    E("GET ftp://a/ HTTP/1.1\r\n" HOST END, 400),
    E("GET http:/a HTTP/1.1\r\n" HOST END, 400),
    E("GET http:a HTTP/1.1\r\n" HOST END, 400),
    E("GET httpx://a/ HTTP/1.1\r\n" HOST END, 400),
    E("CONNECT / HTTP/1.1\r\n" HOST END, 400),
    E("CONNECT * HTTP/1.1\r\n" HOST END, 400),
    E("CONNECT http://a:80/ HTTP/1.1\r\n" HOST END, 400),
    E("CONNECT example.com HTTP/1.1\r\n" HOST END, 400),
    E("CONNECT example.com: HTTP/1.1\r\n" HOST END, 400),
    E("CONNECT u@example.com:443 HTTP/1.1\r\n" HOST END, 400),
    E("CONNECT :443 HTTP/1.1\r\n" HOST END, 400),
    D("GET http://example.com/a?b HTTP/1.1\r\nHost: other\r\n\r\n", "GET", "http://example.com/a?b",
      "/a", "b", "example.com", 11, NONE, 0, 1, 1),
    D("GET http://example.com HTTP/1.1\r\nHost: example.com\r\n\r\n", "GET", "http://example.com",
      "/", "", "example.com", 11, NONE, 0, 1, 1),
    D("GET http://example.com?x=1 HTTP/1.1\r\n" HOST END, "GET", "http://example.com?x=1", "/",
      "x=1", "example.com", 11, NONE, 0, 1, 1),
    D("GET HTTPS://Example.com:8443/p/q HTTP/1.1\r\n" HOST END, "GET",
      "HTTPS://Example.com:8443/p/q", "/p/q", "", "Example.com:8443", 11, NONE, 0, 1, 1),
    D("GET hTtP://a/ HTTP/1.1\r\n" HOST END, "GET", "hTtP://a/", "/", "", "a", 11, NONE, 0, 1, 1),
    D("GET http://[::1]:8080/x HTTP/1.1\r\n" HOST END, "GET", "http://[::1]:8080/x", "/x", "",
      "[::1]:8080", 11, NONE, 0, 1, 1),
    D("GET http://127.0.0.1/ HTTP/1.0\r\n\r\n", "GET", "http://127.0.0.1/", "/", "", "127.0.0.1",
      10, NONE, 0, 0, 0),
    D("GET http://a:/ HTTP/1.1\r\n" HOST END, "GET", "http://a:/", "/", "", "a:", 11, NONE, 0, 1,
      1),
    E("GET http://example.com/ HTTP/1.1\r\n\r\n", 400), /* HTTP/1.1 needs Host */
    E("GET http://user@host/ HTTP/1.1\r\n" HOST END, 400),
    E("GET http://user:pw@host/ HTTP/1.1\r\n" HOST END, 400),
    E("GET http://@host/ HTTP/1.1\r\n" HOST END, 400),
    E("GET http:///a HTTP/1.1\r\n" HOST END, 400),
    E("GET http:// HTTP/1.1\r\n" HOST END, 400),
    E("GET http://:80/ HTTP/1.1\r\n" HOST END, 400),
    E("GET http://[::1/ HTTP/1.1\r\n" HOST END, 400),
    E("GET http://a:99999/ HTTP/1.1\r\n" HOST END, 400),
    E("GET http://a:8x/ HTTP/1.1\r\n" HOST END, 400),
    E("GET http://a_b\\c/ HTTP/1.1\r\n" HOST END, 400),
    /* ---- field lines ---- */
    D(G("X-a: 1\r\nx-B:2\r\nX-C:\t3 \t\r\n"), "GET", "/", "/", "", "h", 11, NONE, 0, 1, 4),
    D(G("X: a b\tc\r\n"), "GET", "/", "/", "", "h", 11, NONE, 0, 1, 2),
    D(G("X: \x80\xff\xc3\xa9\r\n"), "GET", "/", "/", "", "h", 11, NONE, 0, 1, 2),
    D(G("X:\r\nY: \r\nZ:\t \r\n"), "GET", "/", "/", "", "h", 11, NONE, 0, 1, 4),
    D(G("!#$%&'*+-.^_`|~09azAZ: v\r\n"), "GET", "/", "/", "", "h", 11, NONE, 0, 1, 2),
    D(G("X: \"quoted\", (comment), a=b; c\r\n"), "GET", "/", "/", "", "h", 11, NONE, 0, 1, 2),
    E(G("Host : h\r\n"), 400),
    E(GET11 "Host\t: h\r\n\r\n", 400),
    E(G("X-Foo : 1\r\n"), 400),
    E(G("NoColon\r\n"), 400),
    E(G(": v\r\n"), 400),
    E(GET11 " Host: h\r\n\r\n", 400),
    E(GET11 "\tHost: h\r\n\r\n", 400),
    E(G("X: a\r\n  b\r\n"), 400),
    E(G("X: a\r\n\tb\r\n"), 400),
    EN(G("X: a\x00"
         "b\r\n"),
       400),
    E(G("X: a\rb\r\n"), 400),
    E(G("X: a\x7f\r\n"), 400),
    E(G("X: a\x01\r\n"), 400),
    E(G("X: a\x1b[0m\r\n"), 400),
    E(G("X\x80: v\r\n"), 400),
    E(G("X@: v\r\n"), 400),
    E(G("X(y): v\r\n"), 400),
    E(G("\"X\": v\r\n"), 400),
    E(G("X y: v\r\n"), 400),
    /* ---- Host ---- */
    E(GET11 END, 400),
    E(GET11 "X: y\r\n\r\n", 400),
    E(GET11 "Host: a\r\nHost: a\r\n\r\n", 400),
    E(GET11 "Host: a\r\nHost: b\r\n\r\n", 400),
    E(GET11 "Host:\r\nHost: a\r\n\r\n", 400),
    E("GET / HTTP/1.0\r\nHost: a\r\nHost: a\r\n\r\n", 400),
    E(GET11 "Host: a b\r\n\r\n", 400),
    E(GET11 "Host: a@b\r\n\r\n", 400),
    E(GET11 "Host: u:p@b\r\n\r\n", 400),
    E(GET11 "Host: a/b\r\n\r\n", 400),
    E(GET11 "Host: a:b\r\n\r\n", 400),
    E(GET11 "Host: a:80:80\r\n\r\n", 400),
    E(GET11 "Host: a:123456\r\n\r\n", 400),
    E(GET11 "Host: a:65536\r\n\r\n", 400),
    E(GET11 "Host: :80\r\n\r\n", 400),
    E(GET11 "Host: [::1\r\n\r\n", 400),
    E(GET11 "Host: [zz::1]\r\n\r\n", 400),
    E(GET11 "Host: [1:2:3:4:5:6:7:8:9]\r\n\r\n", 400),
    E(GET11 "Host: [1::2::3]\r\n\r\n", 400),
    E(GET11 "Host: []\r\n\r\n", 400),
    E(GET11 "Host: [::1]x\r\n\r\n", 400),
    E(GET11 "Host: a,b\r\n\r\n", 400),
    E(GET11 "Host: a, b\r\n\r\n", 400),
    E(GET11 "Host: a%zz\r\n\r\n", 400),
    E(GET11 "Host: a\\b\r\n\r\n", 400),
    E(GET11 "Host: \xc3\xa9.com\r\n\r\n", 400),
    E("GET http://a/ HTTP/1.1\r\nHost:\r\n\r\n", 400), /* empty Host, authority in target */
    E("CONNECT a:443 HTTP/1.1\r\nHost:\r\n\r\n", 400),
    E("GET http://a/ HTTP/1.1\r\nHost: b b\r\n\r\n", 400),
    E(GET11 "Host:\r\n\r\n", 400), /* empty Host: no default server */
    E(GET11 "Host: \t \r\n\r\n", 400),
    E("GET / HTTP/1.0\r\nHost:\r\n\r\n", 400),
    E("OPTIONS * HTTP/1.1\r\nHost:\r\n\r\n", 400),
    D(GET11 "Host: example.com:8080\r\n\r\n", "GET", "/", "/", "", "example.com:8080", 11, NONE, 0,
      1, 1),
    D(GET11 "Host: [2001:db8::1]:443\r\n\r\n", "GET", "/", "/", "", "[2001:db8::1]:443", 11, NONE,
      0, 1, 1),
    D(GET11 "Host: [::ffff:192.0.2.1]\r\n\r\n", "GET", "/", "/", "", "[::ffff:192.0.2.1]", 11, NONE,
      0, 1, 1),
    D(GET11 "Host: [v1.fe80::a+b]\r\n\r\n", "GET", "/", "/", "", "[v1.fe80::a+b]", 11, NONE, 0, 1,
      1),
    D(GET11 "Host: 127.0.0.1:80\r\n\r\n", "GET", "/", "/", "", "127.0.0.1:80", 11, NONE, 0, 1, 1),
    D(GET11 "Host: a-b.c_d~e\r\n\r\n", "GET", "/", "/", "", "a-b.c_d~e", 11, NONE, 0, 1, 1),
    D(GET11 "Host: a%41b\r\n\r\n", "GET", "/", "/", "", "a%41b", 11, NONE, 0, 1, 1),
    D(GET11 "Host: h:\r\n\r\n", "GET", "/", "/", "", "h:", 11, NONE, 0, 1, 1),
    D(GET11 "hOsT:   h  \r\n\r\n", "GET", "/", "/", "", "h", 11, NONE, 0, 1, 1),
    /* ---- Content-Length ---- */
    D(P("Content-Length: 5\r\n"), "POST", "/p", "/p", "", "h", 11, LEN, 5, 1, 2, .rest = "hello"),
    D(P("Content-Length:5\r\n"), "POST", "/p", "/p", "", "h", 11, LEN, 5, 1, 2),
    D(P("Content-Length: \t5 \t\r\n"), "POST", "/p", "/p", "", "h", 11, LEN, 5, 1, 2),
    D(P("Content-Length: 0005\r\n"), "POST", "/p", "/p", "", "h", 11, LEN, 5, 1, 2),
    D(P("Content-Length: 5, 5\r\n"), "POST", "/p", "/p", "", "h", 11, LEN, 5, 1, 2),
    D(P("Content-Length: 5,5,5\r\n"), "POST", "/p", "/p", "", "h", 11, LEN, 5, 1, 2),
    D(P("Content-Length: 5\r\ncontent-length: 5\r\n"), "POST", "/p", "/p", "", "h", 11, LEN, 5, 1,
      3),
    D(P("Content-Length: 4611686018427387904\r\n"), "POST", "/p", "/p", "", "h", 11, LEN,
      4611686018427387904ull, 1, 2),
    D("POST /p HTTP/1.0\r\nContent-Length: 3\r\n\r\n", "POST", "/p", "/p", "", "", 10, LEN, 3, 0, 1,
      .rest = "abc"),
    D(G("Content-Length: 0\r\n"), "GET", "/", "/", "", "h", 11, LEN, 0, 1, 2),
    E(P("Content-Length: -1\r\n"), 400),
    E(P("Content-Length: +5\r\n"), 400),
    E(P("Content-Length: 5 5\r\n"), 400),
    E(P("Content-Length: 0x5\r\n"), 400),
    E(P("Content-Length: 5a\r\n"), 400),
    E(P("Content-Length: 5.0\r\n"), 400),
    E(P("Content-Length:\r\n"), 400),
    E(P("Content-Length: 5, 6\r\n"), 400),
    E(P("Content-Length: 5,\r\n"), 400),
    E(P("Content-Length: ,5\r\n"), 400),
    E(P("Content-Length: 5,,5\r\n"), 400),
    E(P("Content-Length: 5\r\nContent-Length: 6\r\n"), 400),
    E(P("Content-Length: 5\r\nContent-Length: 05\r\nContent-Length: 6\r\n"), 400),
    E(P("Content-Length: \"5\"\r\n"), 400),
    E(P("Content-Length: 4611686018427387905\r\n"), 400),
    E(P("Content-Length: 18446744073709551616\r\n"), 400),
    E(P("Content-Length: 99999999999999999999999999\r\n"), 400),
    E(P("Content-Length : 5\r\n"), 400),
    E(P("Content-Length\t: 5\r\n"), 400),
    /* ---- Transfer-Encoding ---- */
    D(P("Transfer-Encoding: chunked\r\n"), "POST", "/p", "/p", "", "h", 11, CHK, 0, 1, 2,
      .rest = "0\r\n\r\n"),
    D(P("Transfer-Encoding: Chunked\r\n"), "POST", "/p", "/p", "", "h", 11, CHK, 0, 1, 2),
    D(P("transfer-encoding: CHUNKED\r\n"), "POST", "/p", "/p", "", "h", 11, CHK, 0, 1, 2),
    D(P("Transfer-Encoding: \t chunked \t\r\n"), "POST", "/p", "/p", "", "h", 11, CHK, 0, 1, 2),
    E(P("Transfer-Encoding: chunked\r\nContent-Length: 5\r\n"), 400),
    E(P("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n"), 400),
    E(P("Content-Length: 0\r\nTransfer-Encoding: chunked\r\n"), 400),
    E("POST /p HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    E("POST /p HTTP/1.0\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", 400),
    E(P("Transfer-Encoding: chunked, gzip\r\n"), 400),
    E(P("Transfer-Encoding: gzip\r\n"), 400),
    E(P("Transfer-Encoding: identity\r\n"), 400),
    E(P("Transfer-Encoding: chunked, identity\r\n"), 400),
    E(P("Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n"), 400),
    E(P("Transfer-Encoding: chunked, chunked\r\n"), 400),
    E(P("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n"), 400),
    E(P("Transfer-Encoding: xchunked\r\n"), 400),
    E(P("Transfer-Encoding: chunkedx\r\n"), 400),
    E(P("Transfer-Encoding: chunk\r\n"), 400),
    E(P("Transfer-Encoding: chunked;foo\r\n"), 400),
    E(P("Transfer-Encoding: chunked; q=1\r\n"), 400),
    E(P("Transfer-Encoding: \"chunked\"\r\n"), 400),
    E(P("Transfer-Encoding: chunked,\r\n"), 400),
    E(P("Transfer-Encoding: ,chunked\r\n"), 400),
    E(P("Transfer-Encoding: gzip,,chunked\r\n"), 400),
    E(P("Transfer-Encoding:\r\n"), 400),
    E(P("Transfer-Encoding: \r\nTransfer-Encoding: chunked\r\n"), 400),
    E(P("Transfer-Encoding: chun ked\r\n"), 400),
    E(P("Transfer-Encoding: chunked\x0b\r\n"), 400),
    E(P("Transfer-Encoding: \xc3\xa7hunked\r\n"), 400),
    E(P("Transfer-Encoding : chunked\r\n"), 400),
    E(P(" Transfer-Encoding: chunked\r\n"), 400),
    E(P("X: y\r\n Transfer-Encoding: chunked\r\n"), 400),
    E(P("Transfer-Encoding:\r\n chunked\r\n"), 400),
    E(P("Transfer-Encoding: gzip, chunked\r\n"), 501),
    E(P("Transfer-Encoding: deflate,chunked\r\n"), 501),
    E(P("Transfer-Encoding: identity, chunked\r\n"), 501),
    E(P("Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n"), 501),
    D(P("Transfer_Encoding: chunked\r\n"), "POST", "/p", "/p", "", "h", 11, NONE, 0, 1, 2),
    D(P("Transfer-Encoding2: chunked\r\n"), "POST", "/p", "/p", "", "h", 11, NONE, 0, 1, 2),
    /* ---- Connection ---- */
    D(G("Connection: close\r\n"), "GET", "/", "/", "", "h", 11, NONE, 0, 0, 2),
    D(G("Connection: CLOSE\r\n"), "GET", "/", "/", "", "h", 11, NONE, 0, 0, 2),
    D(G("Connection: keep-alive, close\r\n"), "GET", "/", "/", "", "h", 11, NONE, 0, 0, 2),
    D(G("Connection: upgrade,\tclose ,x\r\n"), "GET", "/", "/", "", "h", 11, NONE, 0, 0, 2),
    D(G("Connection: foo\r\nConnection: close\r\n"), "GET", "/", "/", "", "h", 11, NONE, 0, 0, 3),
    D(G("Connection: upgrade\r\n"), "GET", "/", "/", "", "h", 11, NONE, 0, 1, 2),
    D(G("Connection: closed\r\n"), "GET", "/", "/", "", "h", 11, NONE, 0, 1, 2),
    D(G("Connection: ,,\r\n"), "GET", "/", "/", "", "h", 11, NONE, 0, 1, 2),
    D("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", "GET", "/", "/", "", "", 10, NONE, 0, 1,
      1),
    D("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", "GET", "/", "/", "", "", 10, NONE, 0, 1,
      1),
    D("GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n", "GET", "/", "/", "", "", 10, NONE,
      0, 0, 1),
    D("GET / HTTP/1.0\r\nConnection: close\r\nConnection: keep-alive\r\n\r\n", "GET", "/", "/", "",
      "", 10, NONE, 0, 0, 2),
    D("GET / HTTP/1.0\r\nConnection: upgrade\r\n\r\n", "GET", "/", "/", "", "", 10, NONE, 0, 0, 1),
    /* ---- Expect ---- */
    D(P("Expect: 100-continue\r\nContent-Length: 1\r\n"), "POST", "/p", "/p", "", "h", 11, LEN, 1,
      1, 3, .cont = 1),
    D(P("Expect: 100-Continue\r\n"), "POST", "/p", "/p", "", "h", 11, NONE, 0, 1, 2, .cont = 1),
    D("POST /p HTTP/1.0\r\nExpect: 100-continue\r\n\r\n", "POST", "/p", "/p", "", "", 10, NONE, 0,
      0, 1),
    D("POST /p HTTP/1.0\r\nExpect: foo\r\n\r\n", "POST", "/p", "/p", "", "", 10, NONE, 0, 0, 1),
    E(P("Expect: foo\r\n"), 417),
    E(P("Expect: 100-continue, foo\r\n"), 417),
    E(P("Expect: 100-continuex\r\n"), 417),
    E(P("Expect: 100-continue=1\r\n"), 417),
    E(P("Expect: foo\r\nX : y\r\n"), 400),         /* any 400 wins over 417 */
    E("FOO / HTTP/1.1\r\nHost: a b\r\n\r\n", 400), /* ... and over 501 */
    E("FOO / HTTP/1.1\r\n" HOST "Expect: foo\r\n\r\n", 501),
    /* ---- limits (small, to show the exact edges) ---- */
    D("GET /12 HTTP/1.1\r\n" HOST END, "GET", "/12", "/12", "", "h", 11, NONE, 0, 1, 1,
      .rl_max = 16),
    E("GET /123 HTTP/1.1\r\n" HOST END, 414, .rl_max = 16),
    E("GET /123456789012345678901234567890", 414, .rl_max = 16), /* no CRLF needed */
    E("GETGETGETGETGETGETGET", 414, .rl_max = 16),
    E("GET /12 HTTP/1.1X", 414, .rl_max = 16),
    D("\r\n\r\nGET /12 HTTP/1.1\r\n" HOST END, "GET", "/12", "/12", "", "h", 11, NONE, 0, 1, 1,
      .rl_max = 16),
    D(GET11 "Host: h\r\nX: 123456\r\n\r\n", "GET", "/", "/", "", "h", 11, NONE, 0, 1, 2,
      .hdr_max = 20),
    E(GET11 "Host: h\r\nX: 1234567\r\n\r\n", 431, .hdr_max = 20),
    E(GET11 "Host: h\r\nX: 12345678901234567890", 431, .hdr_max = 20),
    E(GET11 "Host: h\r\nXXXXXXXXXXXXXXXXXXXXXXXXXXX", 431, .hdr_max = 20),
    E(GET11 "Host: h\r\nX:                            ", 431, .hdr_max = 20),
    D(GET11 "Host: h\r\nX: 1\r\n\r\n", "GET", "/", "/", "", "h", 11, NONE, 0, 1, 2, .nhdr_max = 2),
    E(GET11 "Host: h\r\nX: 1\r\nY: 2\r\n\r\n", 431, .nhdr_max = 2),
    E(GET11 "Host: h\r\nX: 1\r\nY", 431, .nhdr_max = 2),
    /* ---- incomplete heads ---- */
    E("", AGAIN),
    E("\r\n", AGAIN),
    E("\r", AGAIN),
    E("GET", AGAIN),
    E("GET /", AGAIN),
    E("GET / HTTP/1.", AGAIN),
    E("GET / HTTP/1.1\r", AGAIN),
    E(GET11, AGAIN),
    E(GET11 "Host: h", AGAIN),
    E(GET11 "Host: h\r\n", AGAIN),
    E(GET11 "Host: h\r\n\r", AGAIN),
};

#define NCASES (sizeof(req_cases) / sizeof(req_cases[0]))

static size_t case_len(const req_case_t *c)
{
    return c->len ? c->len : strlen(c->in);
}

/* The case's bytes (head + rest) in a fresh exact-size buffer. */
static char *case_input(const req_case_t *c, size_t *n)
{
    size_t hl = case_len(c), rl = c->rest ? strlen(c->rest) : 0;
    char *b = malloc(hl + rl + 1);
    ck_assert_ptr_nonnull(b);
    memcpy(b, c->in, hl);
    if (rl)
        memcpy(b + hl, c->rest, rl);
    *n = hl + rl;
    return b;
}

static tw_http_field_t case_fields[256];

static void case_init(const req_case_t *c, tw_http_parser_t *p, tw_http_field_t *fields)
{
    tw_http_limits_t lim;
    tw_http_limits_default(&lim);
    if (c->rl_max)
        lim.request_line_max = c->rl_max;
    if (c->hdr_max)
        lim.header_size_max = c->hdr_max;
    if (c->nhdr_max)
        lim.headers_max = c->nhdr_max;
    tw_http_parser_init(p, &lim, fields, 256);
    if (c->filter)
        p->method_filter = filter_fn;
}

/* Parses the bytes of buf as successive prefixes ending at cuts[0..ncuts), then
 * all of it; each call sees only a fresh exact-size copy of its prefix. */
static tw_parse_result_t parse_split(tw_http_parser_t *p, const char *buf, size_t n,
                                     const size_t *cuts, size_t ncuts)
{
    for (size_t k = 0; k <= ncuts; k++) {
        size_t m = k < ncuts ? cuts[k] : n;
        char *copy = malloc(m ? m : 1);
        ck_assert_ptr_nonnull(copy);
        memcpy(copy, buf, m);
        tw_parse_result_t r = tw_http_parse_head(p, copy, m);
        free(copy);
        if (r != TW_PARSE_AGAIN)
            return r;
    }
    return TW_PARSE_AGAIN;
}

static void span_is(const char *buf, tw_span_t s, const char *want, const char *what, int line)
{
    size_t wl = strlen(want);
    ck_assert_msg(s.len == wl && memcmp(buf + s.off, want, wl) == 0,
                  "line %d: %s is '%.*s', want '%s'", line, what, (int)s.len, buf + s.off, want);
}

static void check_case(const req_case_t *c, const tw_http_parser_t *p, tw_parse_result_t r,
                       const char *buf)
{
    int line = c->line;
    if (c->expect == AGAIN) {
        ck_assert_msg(r == TW_PARSE_AGAIN, "line %d: result %d, want AGAIN", line, r);
        return;
    }
    if (c->expect != 0) {
        ck_assert_msg(r == TW_PARSE_ERROR, "line %d: result %d, want error %d", line, r, c->expect);
        ck_assert_msg(p->status == c->expect, "line %d: status %d (%s), want %d", line, p->status,
                      p->error, c->expect);
        ck_assert_msg(p->error != NULL, "line %d: no error text", line);
        ck_assert(!p->keep_alive);
        return;
    }
    ck_assert_msg(r == TW_PARSE_DONE, "line %d: result %d (status %d: %s), want DONE", line, r,
                  p->status, p->error ? p->error : "");
    span_is(buf, p->method, c->method, "method", line);
    span_is(buf, p->target, c->target, "target", line);
    span_is(buf, p->path, c->path, "path", line);
    span_is(buf, p->query, c->query, "query", line);
    span_is(buf, p->host, c->host, "host", line);
    ck_assert_msg(p->version == c->version, "line %d: version %d", line, p->version);
    ck_assert_msg((int)p->body_kind == c->body, "line %d: body_kind %d", line, p->body_kind);
    ck_assert_msg(p->content_length == c->cl, "line %d: content_length %llu", line,
                  (unsigned long long)p->content_length);
    ck_assert_msg(p->keep_alive == (c->ka != 0), "line %d: keep_alive %d", line, p->keep_alive);
    ck_assert_msg((int)p->field_count == c->nfields, "line %d: %zu fields", line, p->field_count);
    ck_assert_msg(p->expect_continue == (c->cont != 0), "line %d: expect_continue %d", line,
                  p->expect_continue);
    ck_assert_msg(p->head_len == case_len(c), "line %d: head_len %zu", line, p->head_len);
    tw_target_form_t form = c->target[0] == '/'                            ? TW_TARGET_ORIGIN
                            : c->target[0] == '*'                          ? TW_TARGET_ASTERISK
                            : (c->target[0] == 'h' || c->target[0] == 'H') ? TW_TARGET_ABSOLUTE
                                                                           : TW_TARGET_AUTHORITY;
    ck_assert_msg(p->target_form == form, "line %d: form %d", line, p->target_form);
    for (size_t i = 0; i < p->field_count; i++) {
        const tw_http_field_t *f = &p->fields[i];
        ck_assert(f->name.len > 0 && f->name.off + f->name.len < p->head_len);
        ck_assert(f->value.off + f->value.len < p->head_len);
        if (f->value.len) {
            ck_assert(buf[f->value.off] != ' ' && buf[f->value.off] != '\t');
            ck_assert(buf[f->value.off + f->value.len - 1] != ' ');
            ck_assert(buf[f->value.off + f->value.len - 1] != '\t');
        }
    }
}

/* Two parsers that read the same bytes agree on everything. */
static void same_result(const tw_http_parser_t *a, tw_parse_result_t ra, const tw_http_parser_t *b,
                        tw_parse_result_t rb, int line, size_t cut)
{
    ck_assert_msg(ra == rb, "line %d cut %zu: result %d vs %d (%s)", line, cut, ra, rb,
                  b->error ? b->error : "");
    if (ra == TW_PARSE_ERROR) {
        ck_assert_msg(a->status == b->status, "line %d cut %zu: status %d vs %d", line, cut,
                      a->status, b->status);
        ck_assert_msg(a->pos == b->pos, "line %d cut %zu: error at %zu vs %zu", line, cut, a->pos,
                      b->pos);
        return;
    }
    if (ra != TW_PARSE_DONE)
        return;
#define SAME_SPAN(f) ck_assert(a->f.off == b->f.off && a->f.len == b->f.len)
    SAME_SPAN(method);
    SAME_SPAN(target);
    SAME_SPAN(path);
    SAME_SPAN(query);
    SAME_SPAN(host);
    SAME_SPAN(host_name);
#undef SAME_SPAN
    ck_assert(a->port == b->port && a->target_form == b->target_form);
    ck_assert(a->version == b->version && a->body_kind == b->body_kind);
    ck_assert(a->content_length == b->content_length && a->keep_alive == b->keep_alive);
    ck_assert(a->expect_continue == b->expect_continue && a->head_len == b->head_len);
    ck_assert_uint_eq(a->field_count, b->field_count);
    ck_assert(memcmp(a->fields, b->fields, a->field_count * sizeof(tw_http_field_t)) == 0);
}

START_TEST(test_cases_whole)
{
    const req_case_t *c = &req_cases[_i];
    size_t n;
    char *buf = case_input(c, &n);
    tw_http_parser_t p;
    case_init(c, &p, case_fields);
    tw_parse_result_t r = parse_split(&p, buf, n, NULL, 0);
    check_case(c, &p, r, buf);
    /* once finished, it stays finished */
    ck_assert_int_eq(tw_http_parse_head(&p, buf, n), r);
    free(buf);
}
END_TEST

START_TEST(test_cases_split)
{
    const req_case_t *c = &req_cases[_i];
    size_t n;
    char *buf = case_input(c, &n);
    static tw_http_field_t whole_fields[256], split_fields[256];
    tw_http_parser_t whole, p;
    case_init(c, &whole, whole_fields);
    tw_parse_result_t rw = parse_split(&whole, buf, n, NULL, 0);

    /* every split into two calls */
    for (size_t cut = 0; cut <= n; cut++) {
        case_init(c, &p, split_fields);
        tw_parse_result_t r = parse_split(&p, buf, n, &cut, 1);
        same_result(&whole, rw, &p, r, c->line, cut);
        check_case(c, &p, r, buf);
    }
    /* byte by byte */
    size_t *cuts = calloc(n + 1, sizeof(*cuts));
    ck_assert_ptr_nonnull(cuts);
    for (size_t k = 0; k < n; k++)
        cuts[k] = k + 1;
    case_init(c, &p, split_fields);
    tw_parse_result_t r = parse_split(&p, buf, n, cuts, n);
    same_result(&whole, rw, &p, r, c->line, 1);
    check_case(c, &p, r, buf);
    /* the same prefix twice and three-way splits */
    for (size_t a = 1; a + 1 < n; a += 3) {
        size_t three[3] = {a, a, a + (n - a) / 2};
        case_init(c, &p, split_fields);
        r = parse_split(&p, buf, n, three, 3);
        same_result(&whole, rw, &p, r, c->line, a);
    }
    free(cuts);
    free(buf);
}
END_TEST

START_TEST(test_fields_and_host)
{
    const char *req = "GET http://[::1]:8080/x HTTP/1.1\r\nHost:  other:81 \r\nX-A:\t a  b \t\r\n"
                      "Empty:\r\n\r\n";
    tw_http_field_t fields[8];
    tw_http_parser_t p;
    tw_http_parser_init(&p, NULL, fields, 8);
    ck_assert_int_eq(tw_http_parse_head(&p, req, strlen(req)), TW_PARSE_DONE);
    ck_assert_uint_eq(p.field_count, 3);
    span_is(req, fields[0].name, "Host", "name", __LINE__);
    span_is(req, fields[0].value, "other:81", "value", __LINE__);
    span_is(req, fields[1].name, "X-A", "name", __LINE__);
    span_is(req, fields[1].value, "a  b", "value", __LINE__);
    span_is(req, fields[2].name, "Empty", "name", __LINE__);
    ck_assert_uint_eq(fields[2].value.len, 0);
    span_is(req, p.host, "[::1]:8080", "host", __LINE__);
    span_is(req, p.host_name, "[::1]", "host_name", __LINE__);
    ck_assert_int_eq(p.port, 8080);
    ck_assert(tw_span_equals_nocase(req, fields[1].name, "x-a"));
    ck_assert(tw_span_equals_nocase(req, fields[1].name, "X-A"));
    ck_assert(!tw_span_equals_nocase(req, fields[1].name, "x-ab"));
    ck_assert(!tw_span_equals_nocase(req, fields[1].name, "x-"));
    ck_assert(!tw_span_equals_nocase(req, fields[1].name, "y-a"));

    const char *r2 = "GET / HTTP/1.1\r\nHost: example.org\r\n\r\n";
    tw_http_parser_init(&p, NULL, fields, 8);
    ck_assert_int_eq(tw_http_parse_head(&p, r2, strlen(r2)), TW_PARSE_DONE);
    span_is(r2, p.host_name, "example.org", "host_name", __LINE__);
    ck_assert_int_eq(p.port, -1);

    const char *r3 = "GET / HTTP/1.1\r\nHost: 10.1.2.3:0\r\n\r\n";
    tw_http_parser_init(&p, NULL, fields, 8);
    ck_assert_int_eq(tw_http_parse_head(&p, r3, strlen(r3)), TW_PARSE_DONE);
    span_is(r3, p.host_name, "10.1.2.3", "host_name", __LINE__);
    ck_assert_int_eq(p.port, 0);
}
END_TEST

/* The default limits, at their real sizes. */
START_TEST(test_default_limits)
{
    static tw_http_field_t fields[128];
    static char buf[64 * 1024];
    tw_http_parser_t p;
    size_t n;

    /* a request line of exactly 8192 bytes passes; one more byte is 414 */
    for (int extra = 0; extra <= 1; extra++) {
        size_t target = 8192 - strlen("GET  HTTP/1.1") + (size_t)extra;
        n = 0;
        n += (size_t)sprintf(buf, "GET /");
        memset(buf + n, 'a', target - 1);
        n += target - 1;
        n += (size_t)sprintf(buf + n, " HTTP/1.1\r\nHost: h\r\n\r\n");
        tw_http_parser_init(&p, NULL, fields, 128);
        tw_parse_result_t r = tw_http_parse_head(&p, buf, n);
        if (extra) {
            ck_assert_int_eq(r, TW_PARSE_ERROR);
            ck_assert_int_eq(p.status, 414);
        } else {
            ck_assert_int_eq(r, TW_PARSE_DONE);
            ck_assert_uint_eq(p.target.len, target);
        }
    }
    /* 414 as soon as byte 8193 of the line arrives, fed in pieces */
    memset(buf, 'a', sizeof(buf));
    memcpy(buf, "GET /", 5);
    tw_http_parser_init(&p, NULL, fields, 128);
    for (n = 1000; n <= 8192; n += 1000)
        ck_assert_int_eq(tw_http_parse_head(&p, buf, n), TW_PARSE_AGAIN);
    ck_assert_int_eq(tw_http_parse_head(&p, buf, 8192), TW_PARSE_AGAIN);
    ck_assert_int_eq(tw_http_parse_head(&p, buf, 8193), TW_PARSE_ERROR);
    ck_assert_int_eq(p.status, 414);

    /* 100 fields pass, 101 are 431 */
    for (int extra = 0; extra <= 1; extra++) {
        n = (size_t)sprintf(buf, "GET / HTTP/1.1\r\nHost: h\r\n");
        for (int i = 1; i < 100 + extra; i++)
            n += (size_t)sprintf(buf + n, "X-%d: %d\r\n", i, i);
        n += (size_t)sprintf(buf + n, "\r\n");
        tw_http_parser_init(&p, NULL, fields, 128);
        tw_parse_result_t r = tw_http_parse_head(&p, buf, n);
        ck_assert_int_eq(r, extra ? TW_PARSE_ERROR : TW_PARSE_DONE);
        if (extra)
            ck_assert_int_eq(p.status, 431);
        else
            ck_assert_uint_eq(p.field_count, 100);
    }
    /* 32 KiB of field lines pass, one byte more is 431 */
    for (int extra = 0; extra <= 1; extra++) {
        size_t hs = strlen("GET / HTTP/1.1\r\n");
        n = (size_t)sprintf(buf, "GET / HTTP/1.1\r\nHost: h\r\nX: ");
        size_t fill = hs + 32 * 1024 - n - 2 + (size_t)extra;
        memset(buf + n, 'v', fill);
        n += fill;
        n += (size_t)sprintf(buf + n, "\r\n\r\n");
        tw_http_parser_init(&p, NULL, fields, 128);
        tw_parse_result_t r = tw_http_parse_head(&p, buf, n);
        ck_assert_int_eq(r, extra ? TW_PARSE_ERROR : TW_PARSE_DONE);
        if (extra)
            ck_assert_int_eq(p.status, 431);
    }
    /* field storage smaller than headers_max: 431, not an overflow */
    n = (size_t)sprintf(buf, "GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\n\r\n");
    tw_http_parser_init(&p, NULL, fields, 2);
    ck_assert_int_eq(tw_http_parse_head(&p, buf, n), TW_PARSE_ERROR);
    ck_assert_int_eq(p.status, 431);
}
END_TEST

/* The buffer may move between calls: only offsets are kept. */
START_TEST(test_buffer_moves)
{
    const char *req = "POST /up?x HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc";
    size_t n = strlen(req);
    tw_http_field_t fields[4];
    tw_http_parser_t p;
    tw_http_parser_init(&p, NULL, fields, 4);
    tw_parse_result_t r = TW_PARSE_AGAIN;
    for (size_t m = 7; r == TW_PARSE_AGAIN; m += 7) {
        size_t k = m < n ? m : n;
        char *b = malloc(k + 64);
        memset(b, 'X', k + 64);
        memcpy(b, req, k);
        r = tw_http_parse_head(&p, b, k);
        free(b);
    }
    ck_assert_int_eq(r, TW_PARSE_DONE);
    ck_assert_uint_eq(p.head_len, n - 3);
    span_is(req, p.path, "/up", "path", __LINE__);
    span_is(req, p.query, "x", "query", __LINE__);
    ck_assert_uint_eq(p.content_length, 3);
}
END_TEST

/* ---- chunked decoder ---------------------------------------------------------- */

typedef struct {
    int line;
    const char *in;
    int expect;       /* TW_CHUNK_DONE, TW_CHUNK_ERROR or TW_CHUNK_AGAIN */
    const char *body; /* decoded bytes (for DONE and AGAIN) */
    size_t left;      /* bytes after the end (DONE) */
    size_t max_line, max_trailers;
} chunk_case_t;

#define CD(in_, body_, left_, ...)                                                                 \
    {                                                                                              \
        .line = __LINE__, .in = in_, .expect = TW_CHUNK_DONE, .body = body_, .left = left_,        \
        __VA_ARGS__                                                                                \
    }
#define CE(in_, ...)                                                                               \
    {                                                                                              \
        .line = __LINE__, .in = in_, .expect = TW_CHUNK_ERROR, __VA_ARGS__                         \
    }
#define CA(in_, body_)                                                                             \
    {                                                                                              \
        .line = __LINE__, .in = in_, .expect = TW_CHUNK_AGAIN, .body = body_                       \
    }

static const chunk_case_t chunk_cases[] = {
    CD("0\r\n\r\n", "", 0),
    CD("5\r\nhello\r\n0\r\n\r\n", "hello", 0),
    CD("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", "hello world", 0),
    CD("1\r\na\r\n1\r\nb\r\n1\r\nc\r\n0\r\n\r\n", "abc", 0),
    CD("A\r\n0123456789\r\n0\r\n\r\n", "0123456789", 0),
    CD("a\r\n0123456789\r\n0\r\n\r\n", "0123456789", 0),
    CD("0005\r\nhello\r\n0000\r\n\r\n", "hello", 0),
    CD("00000000000000000000005\r\nhello\r\n0\r\n\r\n", "hello", 0),
    CD("000\r\n\r\n", "", 0),
    CD("5\r\n\r\n\r\n\r\r\n0\r\n\r\n", "\r\n\r\n\r", 0),
    CD("5;foo\r\nhello\r\n0\r\n\r\n", "hello", 0),
    CD("5;foo=bar\r\nhello\r\n0\r\n\r\n", "hello", 0),
    CD("5;foo=\"b a\\\"r\"\r\nhello\r\n0\r\n\r\n", "hello", 0),
    CD("5;foo=\"\"\r\nhello\r\n0\r\n\r\n", "hello", 0),
    CD("5;foo=\"\x80\xff\t;=\"\r\nhello\r\n0\r\n\r\n", "hello", 0),
    CD("5 ; foo = bar\r\nhello\r\n0\r\n\r\n", "hello", 0),
    CD("5\t;\tfoo\t=\t\"x\" ;b\r\nhello\r\n0\r\n\r\n", "hello", 0),
    CD("5;a;b=c;d=\"e\"\r\nhello\r\n0\r\n\r\n", "hello", 0),
    CD("5;a=b ;c\r\nhello\r\n0;last\r\n\r\n", "hello", 0),
    CD("0\r\nX: y\r\n\r\n", "", 0),
    CD("0\r\nX: y\r\nZ:\r\nChecksum:\t a b \t\r\n\r\n", "", 0),
    CD("0\r\nX: \x80\xff\r\n\r\n", "", 0),
    CD("0\r\n\r\nGET / HTTP/1.1\r\n", "", 16),
    CD("3\r\nabc\r\n0\r\nT: 1\r\n\r\nnext", "abc", 4),
    CA("", ""),
    CA("5", ""),
    CA("5\r\nhel", "hel"),
    CA("5\r\nhello\r\n", "hello"),
    CA("5\r\nhello\r\n0\r\n", "hello"),
    CA("0\r\nX: y\r\n", ""),
    CA("7FFFFFFFFFFFFFFF\r\nab", "ab"),
    CA("5;foo=\"bar\"", ""),
    CE(" 5\r\nhello\r\n0\r\n\r\n"),
    CE("+5\r\nhello\r\n0\r\n\r\n"),
    CE("-5\r\nhello\r\n0\r\n\r\n"),
    CE("0x5\r\nhello\r\n0\r\n\r\n"),
    CE("5 \r\nhello\r\n0\r\n\r\n"),
    CE("5\t\r\nhello\r\n0\r\n\r\n"),
    CE("g\r\n"),
    CE("\r\n"),
    CE(";a\r\n"),
    CE("5\nhello\r\n0\r\n\r\n"),
    CE("5\rhello\r\n0\r\n\r\n"),
    CE("5\r\nhelloX\r\n0\r\n\r\n"),
    CE("5\r\nhello\n0\r\n\r\n"),
    CE("5\r\nhello\r0\r\n\r\n"),
    CE("5\r\nhello0\r\n\r\n"),
    CE("5\r\nhello\r\n\r\n"),
    CE("4\r\nhello\r\n0\r\n\r\n"),
    CE("8000000000000000\r\n"),
    CE("FFFFFFFFFFFFFFFF\r\n"),
    CE("10000000000000000\r\n"),
    CE("FFFFFFFFFFFFFFFFF\r\n"),
    CE("5;\r\nhello\r\n0\r\n\r\n"),
    CE("5;=x\r\nhello\r\n0\r\n\r\n"),
    CE("5;foo=\r\nhello\r\n0\r\n\r\n"),
    CE("5;foo=\"bar\r\nhello\r\n0\r\n\r\n"),
    CE("5;foo=b@r\r\nhello\r\n0\r\n\r\n"),
    CE("5;foo bar\r\nhello\r\n0\r\n\r\n"),
    CE("5;foo=\"a\"b\r\nhello\r\n0\r\n\r\n"),
    CE("5;foo=\"\x01\"\r\nhello\r\n0\r\n\r\n"),
    CE("5;foo=\"\\\x01\"\r\nhello\r\n0\r\n\r\n"),
    CE("5;f\x80\r\nhello\r\n0\r\n\r\n"),
    CE("5;foo \r\nhello\r\n0\r\n\r\n"),
    CE("5;foo=bar \r\nhello\r\n0\r\n\r\n"),
    CE("5;foo\n\r\nhello\r\n0\r\n\r\n"),
    CE("5;foo=a=b\r\nhello\r\n0\r\n\r\n"),
    CE("5,foo\r\nhello\r\n0\r\n\r\n"),
    CE("0\r\nX y\r\n\r\n"),
    CE("0\r\n X: y\r\n\r\n"),
    CE("0\r\nX: y\r\n z\r\n\r\n"),
    CE("0\r\nX: y\n\r\n"),
    CE("0\r\nX: y\r\n\n"),
    CE("0\r\n\n"),
    CE("0\r\n\rX"),
    CE("0\r\nX: \x01\r\n\r\n"),
    CE("0\r\nX: a\x7f\r\n\r\n"),
    CE("0\r\n: y\r\n\r\n"),
    CE("0\r\nX : y\r\n\r\n"),
    CE("0\r\nX\r\n\r\n"),
    CE("0\r\nX\x80: y\r\n\r\n"),
    CE("0\nX: y\r\n\r\n"),
    /* limits */
    CD("5;abcdefgh\r\nhello\r\n0\r\n\r\n", "hello", 0, .max_line = 10),
    CE("5;abcdefghi\r\nhello\r\n0\r\n\r\n", .max_line = 10),
    CE("00000000001\r\nh\r\n0\r\n\r\n", .max_line = 10),
    CD("0\r\nAbcdefghi:\r\n\r\n", "", 0, .max_line = 10),
    CE("0\r\nAbcdefghij:\r\n\r\n", .max_line = 10),
    CD("0\r\nA: 1\r\nB: 2\r\n\r\n", "", 0, .max_trailers = 14),
    CE("0\r\nA: 1\r\nB: 2\r\n\r\n", .max_trailers = 13),
};

#define NCHUNK (sizeof(chunk_cases) / sizeof(chunk_cases[0]))

/* Feeds data in the pieces ending at cuts[] (then the rest), each piece in
 * an exact-size buffer; appends the decoded body to out. Returns the final
 * result and the bytes left after DONE in *left. */
static tw_chunk_result_t decode_split(const chunk_case_t *c, const char *data, size_t n,
                                      const size_t *cuts, size_t ncuts, char *out, size_t *out_n,
                                      size_t *left)
{
    tw_chunked_decoder_t d;
    tw_chunked_init(&d);
    if (c->max_line)
        d.max_line = c->max_line;
    if (c->max_trailers)
        d.max_trailers = c->max_trailers;
    *out_n = 0;
    *left = 0;
    size_t start = 0;
    for (size_t k = 0; k <= ncuts; k++) {
        size_t end = k < ncuts ? cuts[k] : n;
        size_t m = end - start;
        char *piece = malloc(m ? m : 1);
        ck_assert_ptr_nonnull(piece);
        memcpy(piece, data + start, m);
        size_t at = 0;
        for (;;) {
            size_t used = 0, off = 0, len = 0;
            tw_chunk_result_t r = tw_chunked_decode(&d, piece + at, m - at, &used, &off, &len);
            ck_assert(used <= m - at);
            if (r == TW_CHUNK_DATA) {
                ck_assert(len > 0 && off + len == used);
                memcpy(out + *out_n, piece + at + off, len);
                *out_n += len;
                at += used;
                continue;
            }
            if (r == TW_CHUNK_AGAIN) {
                ck_assert_uint_eq(used, m - at);
                break;
            }
            if (r == TW_CHUNK_ERROR)
                ck_assert_ptr_nonnull(d.error);
            if (r == TW_CHUNK_DONE)
                *left = (m - at - used) + (n - end);
            free(piece);
            return r;
        }
        free(piece);
        start = end;
    }
    return TW_CHUNK_AGAIN;
}

static void check_chunk(const chunk_case_t *c, tw_chunk_result_t r, const char *out, size_t out_n,
                        size_t left, const char *how, size_t cut)
{
    ck_assert_msg((int)r == c->expect, "line %d (%s %zu): result %d, want %d", c->line, how, cut, r,
                  c->expect);
    if (c->expect == TW_CHUNK_ERROR)
        return;
    size_t bl = strlen(c->body);
    ck_assert_msg(out_n == bl && memcmp(out, c->body, bl) == 0,
                  "line %d (%s %zu): body '%.*s', want '%s'", c->line, how, cut, (int)out_n, out,
                  c->body);
    if (c->expect == TW_CHUNK_DONE)
        ck_assert_msg(left == c->left, "line %d (%s %zu): %zu bytes left, want %zu", c->line, how,
                      cut, left, c->left);
}

START_TEST(test_chunked)
{
    const chunk_case_t *c = &chunk_cases[_i];
    size_t n = strlen(c->in), out_n, left;
    char out[256];
    tw_chunk_result_t r = decode_split(c, c->in, n, NULL, 0, out, &out_n, &left);
    check_chunk(c, r, out, out_n, left, "whole", 0);
    for (size_t cut = 0; cut <= n; cut++) {
        r = decode_split(c, c->in, n, &cut, 1, out, &out_n, &left);
        check_chunk(c, r, out, out_n, left, "split", cut);
    }
    size_t cuts[256];
    for (size_t k = 0; k < n; k++)
        cuts[k] = k + 1;
    r = decode_split(c, c->in, n, cuts, n, out, &out_n, &left);
    check_chunk(c, r, out, out_n, left, "bytes", 1);
}
END_TEST

START_TEST(test_chunked_misc)
{
    tw_chunked_decoder_t d;
    size_t used, off, len;
    /* the largest size: 2^63 - 1 */
    tw_chunked_init(&d);
    ck_assert_int_eq(tw_chunked_decode(&d, "7fffffffffffffff\r\n", 18, &used, &off, &len),
                     TW_CHUNK_AGAIN);
    ck_assert_uint_eq(d.remaining, 0x7fffffffffffffffull);
    /* after DONE and ERROR the decoder stays there */
    tw_chunked_init(&d);
    ck_assert_int_eq(tw_chunked_decode(&d, "0\r\n\r\n", 5, &used, &off, &len), TW_CHUNK_DONE);
    ck_assert_int_eq(tw_chunked_decode(&d, "5\r\n", 3, &used, &off, &len), TW_CHUNK_DONE);
    ck_assert_uint_eq(used, 0);
    tw_chunked_init(&d);
    ck_assert_int_eq(tw_chunked_decode(&d, "x", 1, &used, &off, &len), TW_CHUNK_ERROR);
    ck_assert_int_eq(tw_chunked_decode(&d, "0\r\n\r\n", 5, &used, &off, &len), TW_CHUNK_ERROR);
    /* the default line limit: 4 KiB of extensions */
    static char big[8192];
    memset(big, 'a', sizeof(big));
    memcpy(big, "1;", 2);
    tw_chunked_init(&d);
    ck_assert_int_eq(tw_chunked_decode(&d, big, 4096, &used, &off, &len), TW_CHUNK_AGAIN);
    ck_assert_int_eq(tw_chunked_decode(&d, big, 1, &used, &off, &len), TW_CHUNK_ERROR);
    /* data pieces come back in place, one call per piece */
    const char *s = "3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
    tw_chunked_init(&d);
    ck_assert_int_eq(tw_chunked_decode(&d, s, strlen(s), &used, &off, &len), TW_CHUNK_DATA);
    ck_assert_uint_eq(off, 3);
    ck_assert_uint_eq(len, 3);
    ck_assert_uint_eq(used, 6);
    ck_assert_int_eq(tw_chunked_decode(&d, s + 6, strlen(s) - 6, &used, &off, &len), TW_CHUNK_DATA);
    ck_assert_uint_eq(off, 5);
    ck_assert_uint_eq(len, 2);
    ck_assert_int_eq(tw_chunked_decode(&d, s + 13, strlen(s) - 13, &used, &off, &len),
                     TW_CHUNK_DONE);
    ck_assert_uint_eq(13 + used, strlen(s));
}
END_TEST

/* ---- path normalisation ---------------------------------------------------------- */

typedef struct {
    const char *in;
    const char *out; /* NULL: 400 */
} norm_case_t;

static const norm_case_t norm_cases[] = {
    {"/", "/"},
    {"/a/b", "/a/b"},
    {"/a/b/", "/a/b/"},
    {"/a/./b", "/a/b"},
    {"/a/../b", "/b"},
    {"/a/b/..", "/a/"},
    {"/a/b/.", "/a/b/"},
    {"/a/b/../../c", "/c"},
    {"/a/./../b", "/b"},
    {"/./", "/"},
    {"/.", "/"},
    {"/a/./", "/a/"},
    {"/a/..", "/"},
    {"/a/../", "/"},
    {"/..", NULL},
    {"/../a", NULL},
    {"/a/../..", NULL},
    {"/a/../../b", NULL},
    {"/a/b/c/../../../..", NULL},
    {"/./..", NULL},
    {"/%2e%2e", NULL},
    {"/%2E%2E/etc/passwd", NULL},
    {"/.%2e/x", NULL},
    {"/a/%2e%2e/b", "/b"},
    {"/a/%2E./b", "/b"},
    {"/a/.%2e", "/"},
    {"/%2e", "/"},
    {"/a/%2e/b", "/a/b"},
    {"/%41%42c", "/ABc"},
    {"/a%2Fb", "/a/b"},
    {"/a%2fb", "/a/b"},
    {"/a%2f..%2fb", "/b"},
    {"/%2f..", NULL}, /* "//.." merges to "/.." */
    {"/%2F%2E%2E", NULL},
    {"/%2f../..", NULL},
    {"/a%00", NULL},
    {"/%00/", NULL},
    {"/%zz", NULL},
    {"/%4", NULL},
    {"/%", NULL},
    {"/a%2", NULL},
    {"/%g0", NULL},
    {"/%0g", NULL},
    {"", NULL},
    {"a", NULL},
    {"a/b", NULL},
    {"%2fa", NULL},
    {"*", NULL},
    {"/a//b", "/a/b"},
    {"//", "/"},
    {"///a///b///", "/a/b/"},
    {"/a//..", "/"},
    {"/a//../b", "/b"},
    {"/a/%2f/b", "/a/b"},
    {"//..", NULL},
    {"/...", "/..."},
    {"/a/..b", "/a/..b"},
    {"/a/b..", "/a/b.."},
    {"/.a", "/.a"},
    {"/a/.../b", "/a/.../b"},
    {"/%25", "/%"},
    {"/%252e%252e", "/%2e%2e"},
    {"/%20", "/ "},
    {"/a?b", "/a?b"},
    {"/%e2%82%ac", "/\xe2\x82\xac"},
};

START_TEST(test_normalize)
{
    const norm_case_t *c = &norm_cases[_i];
    size_t n = strlen(c->in), out_len = 99;
    char *in = malloc(n ? n : 1), *out = malloc(n + 1);
    memcpy(in, c->in, n);
    int rc = tw_http_normalize_path(in, n, out, &out_len);
    if (!c->out) {
        ck_assert_msg(rc == 400, "'%s': %d, want 400", c->in, rc);
    } else {
        ck_assert_msg(rc == 0, "'%s': %d", c->in, rc);
        ck_assert_msg(out_len == strlen(c->out) && strcmp(out, c->out) == 0,
                      "'%s' gave '%s', want '%s'", c->in, out, c->out);
    }
    /* in place gives the same */
    char *buf = malloc(n + 1);
    memcpy(buf, c->in, n);
    size_t ip_len = 99;
    ck_assert_int_eq(tw_http_normalize_path(buf, n, buf, &ip_len), rc);
    if (rc == 0)
        ck_assert(ip_len == out_len && memcmp(buf, out, out_len + 1) == 0);
    free(buf);
    free(in);
    free(out);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("http_parser");
    TCase *tc = tcase_create("head");
    tcase_add_loop_test(tc, test_cases_whole, 0, (int)NCASES);
    tcase_add_loop_test(tc, test_cases_split, 0, (int)NCASES);
    tcase_add_test(tc, test_fields_and_host);
    tcase_add_test(tc, test_default_limits);
    tcase_add_test(tc, test_buffer_moves);
    suite_add_tcase(s, tc);
    tc = tcase_create("chunked");
    tcase_add_loop_test(tc, test_chunked, 0, (int)NCHUNK);
    tcase_add_test(tc, test_chunked_misc);
    suite_add_tcase(s, tc);
    tc = tcase_create("normalize");
    tcase_add_loop_test(tc, test_normalize, 0, (int)(sizeof(norm_cases) / sizeof(norm_cases[0])));
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    printf("%zu request cases, %zu chunked cases, %zu path cases\n", NCASES, NCHUNK,
           sizeof(norm_cases) / sizeof(norm_cases[0]));
    return failed ? EXIT_FAILURE : 0;
}

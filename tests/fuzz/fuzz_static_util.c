/* libFuzzer target for the static module's request-header parsers: HTTP
 * dates (If-Modified-Since, If-Range), entity-tag lists (If-None-Match,
 * If-Match), If-Range by its grammar, Range, and the Location path
 * encoder. Each result is checked against the invariants the module
 * relies on. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "static_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;

    /* A date that parses must format back to something that parses to the
     * same second. */
    time_t t = st_http_date_parse(text, size);
    if (t != (time_t)-1) {
        char buf[ST_HTTP_DATE_SIZE];
        if (!st_http_date(t, buf) || st_http_date_parse(buf, strlen(buf)) != t)
            abort();
    }

    /* An entity-tag list: "*" matches, and strong never matches more than
     * weak does. */
    struct stat st;
    memset(&st, 0, sizeof st);
    st.st_size = (off_t)size;
    st.st_mtim.tv_sec = 1700000000;
    char etag[ST_ETAG_MAX];
    st_etag(&st, etag);
    bool strong = st_etag_match(text, size, etag, false);
    bool weak = st_etag_match(text, size, etag, true);
    if (strong && !weak)
        abort();

    /* If-Range: a date that parses matches a strong Last-Modified of that
     * second; a weak Last-Modified only removes matches; what matches
     * without a date is exactly the ETag; a weak tag never matches. */
    if (t != (time_t)-1 && !st_if_range_match(text, size, etag, t, true))
        abort();
    bool by_date = st_if_range_match(text, size, etag, 1700000000, true);
    bool by_tag = st_if_range_match(text, size, etag, 1700000000, false);
    if (by_tag && !by_date)
        abort();
    const char *p = text, *end = text + size;
    while (p < end && (*p == ' ' || *p == '\t'))
        p++;
    while (end > p && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    if (by_tag && ((size_t)(end - p) != strlen(etag) || memcmp(p, etag, strlen(etag)) != 0))
        abort();
    if (by_date && end - p >= 2 && p[0] == 'W' && p[1] == '/')
        abort();

    /* A satisfiable range lies inside the file. */
    uint64_t sizes[] = {0, 1, 10, 4096, UINT64_C(1) << 40};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        uint64_t first = 0, last = 0;
        st_range_t r = st_range_parse(text, size, sizes[i], &first, &last);
        if (r == ST_RANGE_OK && !(first <= last && last < sizes[i]))
            abort();
    }

    /* The encoder never writes past 3 * len + 1 bytes. */
    char *out = malloc(3 * size + 1);
    if (out) {
        size_t n = st_path_encode(text, size, out);
        if (n > 3 * size)
            abort();
        free(out);
    }
    return 0;
}

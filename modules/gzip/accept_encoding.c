/* accept_encoding.c — see accept_encoding.h. */
#include "accept_encoding.h"

#include <string.h>
#include <strings.h>

/* The q-value of one Accept-Encoding element's parameters (";q=0.5");
 * 1000ths, 1000 when absent. */
static int qvalue(const char *p, const char *end)
{
    while (p < end) {
        while (p < end && (*p == ';' || *p == ' ' || *p == '\t'))
            p++;
        if (end - p >= 2 && (p[0] == 'q' || p[0] == 'Q') && p[1] == '=') {
            p += 2;
            int q = 0, digits = 0;
            if (p < end && *p == '1')
                return 1000;
            if (p < end && *p == '0')
                p++;
            if (p < end && *p == '.') {
                p++;
                for (; p < end && *p >= '0' && *p <= '9' && digits < 3; p++, digits++)
                    q = q * 10 + (*p - '0');
            }
            for (; digits < 3; digits++)
                q *= 10;
            return q;
        }
        while (p < end && *p != ';')
            p++;
    }
    return 1000;
}

bool ae_accepts_gzip(const tw_request_t *r)
{
    int gzip_q = -1, star_q = -1;
    for (const tw_header_t *h = tw_request_header(r, "Accept-Encoding"); h;
         h = tw_request_header_next(r, "Accept-Encoding", h)) {
        const char *p = h->value.ptr, *end = p + h->value.len;
        while (p < end) {
            const char *item_end = memchr(p, ',', (size_t)(end - p));
            if (!item_end)
                item_end = end;
            while (p < item_end && (*p == ' ' || *p == '\t'))
                p++;
            const char *name_end = p;
            while (name_end < item_end && *name_end != ';' && *name_end != ' ' && *name_end != '\t')
                name_end++;
            size_t n = (size_t)(name_end - p);
            int q = qvalue(name_end, item_end);
            if ((n == 4 && strncasecmp(p, "gzip", 4) == 0) ||
                (n == 6 && strncasecmp(p, "x-gzip", 6) == 0))
                gzip_q = q > gzip_q ? q : gzip_q;
            else if (n == 1 && *p == '*')
                star_q = q;
            p = item_end < end ? item_end + 1 : end;
        }
    }
    return gzip_q >= 0 ? gzip_q > 0 : star_q > 0;
}

/* test_static_util.c — modules/static/static_util.c: opening files beneath
 * a root (with openat2 and with the fallback walk, on the same tree of
 * files, symlinks and traps), HTTP dates, entity tags, byte ranges, MIME
 * types and path encoding. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "static_util.h"

/* ---- the tree ----------------------------------------------------------------- */

static char base[256]; /* base/root is the root; base/outside.txt is not in it */
static int root_fd = -1;

static void put(const char *rel, const char *text)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", base, rel);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
}

static void dir(const char *rel)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", base, rel);
    ck_assert_int_eq(mkdir(path, 0755), 0);
}

static void link_(const char *target, const char *rel)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", base, rel);
    ck_assert_int_eq(symlink(target, path), 0);
}

static void setup(void)
{
    snprintf(base, sizeof base, "/tmp/test_static.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(base));
    put("outside.txt", "outside");
    dir("root");
    put("root/index.html", "index");
    dir("root/sub");
    put("root/sub/file.txt", "file");
    dir("root/sub/deeper");
    put("root/sub/deeper/x.txt", "x");
    link_("sub/file.txt", "root/link_in");
    link_("sub", "root/link_dir");
    link_("sub/../index.html", "root/link_dotdot_in");
    link_("deeper/../file.txt", "root/sub/link_rel");
    link_("../outside.txt", "root/link_up");
    link_("../../outside.txt", "root/sub/link_up2");
    char abs[512];
    snprintf(abs, sizeof abs, "%s/outside.txt", base);
    link_(abs, "root/link_abs");
    snprintf(abs, sizeof abs, "%s/root/index.html", base);
    link_(abs, "root/link_abs_in"); /* absolute, even if it points inside */
    link_("loop2", "root/loop1");
    link_("loop1", "root/loop2");
    link_("/proc/self/root/etc", "root/link_proc");
    char fifo[512];
    snprintf(fifo, sizeof fifo, "%s/root/fifo", base);
    ck_assert_int_eq(mkfifo(fifo, 0644), 0);

    char root[512];
    snprintf(root, sizeof root, "%s/root", base);
    root_fd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
    ck_assert_int_ge(root_fd, 0);
}

static void teardown(void)
{
    close(root_fd);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", base);
    ck_assert_int_eq(system(cmd), 0);
}

/* ---- opening beneath the root --------------------------------------------------- */

#define DIRECTORY "<dir>"
#define FIFO "<fifo>"

typedef struct {
    const char *rel;
    int beneath;         /* 1: beneath, 0: allow_symlinks_outside */
    int error;           /* 0: opens */
    const char *content; /* the file's text, DIRECTORY or FIFO */
} open_case_t;

static const open_case_t open_cases[] = {
    {"index.html", 1, 0, "index"},
    {"", 1, 0, DIRECTORY},
    {".", 1, 0, DIRECTORY},
    {"sub", 1, 0, DIRECTORY},
    {"sub/", 1, 0, DIRECTORY},
    {"sub/file.txt", 1, 0, "file"},
    {"sub//file.txt", 1, 0, "file"},
    {"./sub/./deeper/x.txt", 1, 0, "x"},
    {"link_in", 1, 0, "file"},
    {"link_dir/file.txt", 1, 0, "file"},
    {"link_dir/deeper/x.txt", 1, 0, "x"},
    {"link_dotdot_in", 1, 0, "index"},
    {"sub/link_rel", 1, 0, "file"},
    {"fifo", 1, 0, FIFO}, /* opens at once (O_NONBLOCK); the caller refuses it */
    {"missing", 1, ENOENT, NULL},
    {"sub/missing/x", 1, ENOENT, NULL},
    {"index.html/x", 1, ENOTDIR, NULL},
    {"index.html/", 1, ENOTDIR, NULL},
    {"link_in/", 1, ENOTDIR, NULL}, /* a symlink to a file, asked for as a directory */
    {"sub/file.txt//", 1, ENOTDIR, NULL},
    {"/etc/passwd", 1, EXDEV, NULL}, /* absolute: openat would ignore the root */
    {"loop1", 1, ELOOP, NULL},
    /* out of the root */
    {"..", 1, EXDEV, NULL},
    {"../outside.txt", 1, EXDEV, NULL},
    {"sub/../../outside.txt", 1, EXDEV, NULL},
    {"sub/../index.html", 1, EXDEV, NULL}, /* ".." is refused even when harmless */
    {"link_up", 1, EXDEV, NULL},
    {"sub/link_up2", 1, EXDEV, NULL},
    {"link_abs", 1, EXDEV, NULL},
    {"link_abs_in", 1, EXDEV, NULL},
    {"link_proc", 1, EXDEV, NULL},
    /* allow_symlinks_outside: symlinks go anywhere, ".." still nowhere */
    {"link_up", 0, 0, "outside"},
    {"link_abs", 0, 0, "outside"},
    {"sub/link_up2", 0, 0, "outside"},
    {"link_in", 0, 0, "file"},
    {"../outside.txt", 0, EXDEV, NULL},
    {"sub/../../outside.txt", 0, EXDEV, NULL},
    {"missing", 0, ENOENT, NULL},
    {"/etc/passwd", 0, EXDEV, NULL},
    {"//etc/passwd", 0, EXDEV, NULL},
    {"index.html/", 0, ENOTDIR, NULL},
};
#define NOPEN (int)(sizeof open_cases / sizeof open_cases[0])

/* Loop index i: case i % NOPEN, with openat2 (first half) or the walk. */
START_TEST(test_open)
{
    const open_case_t *c = &open_cases[_i % NOPEN];
    st_root_t root = {
        .fd = root_fd,
        .beneath = c->beneath,
        .resolver = _i < NOPEN ? ST_RESOLVE_OPENAT2 : ST_RESOLVE_WALK,
    };
    if (root.resolver == ST_RESOLVE_OPENAT2 && st_probe_resolver(root_fd) != ST_RESOLVE_OPENAT2)
        return; /* no openat2 here: the walk half covers it */
    const char *how = root.resolver == ST_RESOLVE_OPENAT2 ? "openat2" : "walk";
    int fd = st_open(&root, c->rel);
    if (c->error) {
        ck_assert_msg(fd == -c->error, "%s '%s' (beneath %d): got %d (%s), want -%s", how, c->rel,
                      c->beneath, fd, fd < 0 ? strerror(-fd) : "an fd", strerror(c->error));
        return;
    }
    ck_assert_msg(fd >= 0, "%s '%s': %s", how, c->rel, strerror(-fd));
    struct stat st;
    ck_assert_int_eq(fstat(fd, &st), 0);
    ck_assert_int_ne(fcntl(fd, F_GETFD) & FD_CLOEXEC, 0);
    if (strcmp(c->content, DIRECTORY) == 0) {
        ck_assert_msg(S_ISDIR(st.st_mode), "%s '%s': not a directory", how, c->rel);
    } else if (strcmp(c->content, FIFO) == 0) {
        ck_assert(S_ISFIFO(st.st_mode));
    } else {
        char buf[64] = {0};
        ck_assert_msg(S_ISREG(st.st_mode), "%s '%s'", how, c->rel);
        ck_assert_int_gt(read(fd, buf, sizeof buf - 1), 0);
        ck_assert_str_eq(buf, c->content);
    }
    close(fd);
}
END_TEST

/* The walk leaks no fds, whatever the outcome. */
START_TEST(test_walk_no_fd_leak)
{
    st_root_t root = {.fd = root_fd, .beneath = true, .resolver = ST_RESOLVE_WALK};
    int before = dup(0);
    close(before);
    for (int i = 0; i < NOPEN; i++) {
        int fd = st_open(&root, open_cases[i].rel);
        if (fd >= 0)
            close(fd);
    }
    int after = dup(0);
    close(after);
    ck_assert_int_eq(after, before);
}
END_TEST

/* ---- dates ---------------------------------------------------------------------- */

START_TEST(test_http_date)
{
    char buf[ST_HTTP_DATE_SIZE];
    st_http_date(784111777, buf);
    ck_assert_str_eq(buf, "Sun, 06 Nov 1994 08:49:37 GMT");
    st_http_date(0, buf);
    ck_assert_str_eq(buf, "Thu, 01 Jan 1970 00:00:00 GMT");
    ck_assert(st_http_date(253402300799, buf)); /* the last second of year 9999 */
    ck_assert_str_eq(buf, "Fri, 31 Dec 9999 23:59:59 GMT");
    ck_assert(st_http_date(-62167219200, buf)); /* the first of year 0000 */
    ck_assert_str_eq(buf, "Sat, 01 Jan 0000 00:00:00 GMT");

    /* No IMF-fixdate for these: refused, never a garbage or 5-digit year
     * (2^62 is beyond what gmtime_r converts). */
    static const time_t out_of_range[] = {
        253402300800, /* year 10000 */
        (time_t)1 << 62, -((time_t)1 << 62), -62167219201, INT64_MAX, INT64_MIN,
    };
    for (size_t i = 0; i < sizeof out_of_range / sizeof out_of_range[0]; i++) {
        memset(buf, 'x', sizeof buf);
        ck_assert_msg(!st_http_date(out_of_range[i], buf), "%lld", (long long)out_of_range[i]);
        ck_assert_str_eq(buf, "");
    }

    static const struct {
        const char *s;
        time_t t;
    } cases[] = {
        {"Sun, 06 Nov 1994 08:49:37 GMT", 784111777},
        {"Sunday, 06-Nov-94 08:49:37 GMT", 784111777},
        {"Sun Nov  6 08:49:37 1994", 784111777},
        {"Sun Nov 16 08:49:37 1994", 784111777 + 10 * 86400},
        {"Thu, 01 Jan 1970 00:00:00 GMT", 0},
        {"Wed, 31 Dec 2031 23:59:59 GMT", 1956527999},
        {"Monday, 01-Jan-35 00:00:00 GMT", 2051222400}, /* two-digit years: 00-69 are 20xx */
        {"", -1},
        {"Sun, 06 Nov 1994 08:49:37 UTC", -1},
        {"Sun, 6 Nov 1994 08:49:37 GMT", -1},
        {"Sun, 06 Nov 1994 08:49:37 GMT junk", -1},
        {"Sun, 06 Foo 1994 08:49:37 GMT", -1},
        {"Sun, 06 Nov 1994 25:49:37 GMT", -1},
        {"1994-11-06T08:49:37Z", -1},
        {"\"abc\"", -1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        ck_assert_msg(st_http_date_parse(cases[i].s, strlen(cases[i].s)) == cases[i].t,
                      "'%s': got %lld", cases[i].s,
                      (long long)st_http_date_parse(cases[i].s, strlen(cases[i].s)));
}
END_TEST

/* ---- entity tags -------------------------------------------------------------------- */

START_TEST(test_etag)
{
    struct stat st = {0};
    st.st_mtim.tv_sec = 1;
    st.st_mtim.tv_nsec = 5;
    st.st_size = 255;
    char tag[ST_ETAG_MAX];
    st_etag(&st, tag);
    ck_assert_str_eq(tag, "\"3b9aca05-ff\"");
    st.st_mtim.tv_nsec = 6; /* a write in the same second changes the tag */
    char tag2[ST_ETAG_MAX];
    st_etag(&st, tag2);
    ck_assert_str_ne(tag, tag2);

    static const struct {
        const char *list;
        bool weak, match;
    } cases[] = {
        {"\"3b9aca05-ff\"", true, true},
        {"\"3b9aca05-ff\"", false, true},
        {"W/\"3b9aca05-ff\"", true, true},
        {"W/\"3b9aca05-ff\"", false, false}, /* strong comparison: weak never matches */
        {"\"x\", \"3b9aca05-ff\"", true, true},
        {"\"x\",W/\"3b9aca05-ff\" ,\"y\"", true, true},
        {" \"x\" , \"y\" ", true, false},
        {"*", true, true},
        {"*", false, true},
        {"\"3b9aca05-f\"", true, false},
        {"3b9aca05-ff", true, false},   /* unquoted: malformed */
        {"\"3b9aca05-ff", true, false}, /* unterminated */
        {"\"x\" junk, \"3b9aca05-ff\"", true, false},
        {"", true, false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        ck_assert_msg(st_etag_match(cases[i].list, strlen(cases[i].list), tag, cases[i].weak) ==
                          cases[i].match,
                      "'%s' weak=%d", cases[i].list, cases[i].weak);
}
END_TEST

/* ---- If-Range ---------------------------------------------------------------------- */

START_TEST(test_if_range)
{
    const char *etag = "\"3b9aca05-ff\"";
    const time_t wed = 1600259200; /* Wed, 16 Sep 2020 12:26:40 GMT */
    static const struct {
        const char *value;
        bool strong_date; /* Last-Modified is a strong validator */
        bool match;
    } cases[] = {
        {"\"3b9aca05-ff\"", true, true},
        {" \"3b9aca05-ff\"\t", true, true},
        {"\"3b9aca05-ff\"", false, true},   /* a tag does not care about the date */
        {"W/\"3b9aca05-ff\"", true, false}, /* weak: never for If-Range */
        {"\"3b9aca05-f\"", true, false},
        {"\"3b9aca05-ff\" junk", true, false},
        {"\"3b9aca05-ff\", \"x\"", true, false}, /* one validator, not a list */
        {"\"3b9aca05-ff", true, false},
        {"\"", true, false},
        /* Dates starting with W are dates: the day name is no "W/". */
        {"Wed, 16 Sep 2020 12:26:40 GMT", true, true},
        {"Wednesday, 16-Sep-20 12:26:40 GMT", true, true},
        {"Wed Sep 16 12:26:40 2020", true, true},
        {"Wed, 16 Sep 2020 12:26:41 GMT", true, false}, /* exactly, not "not newer" */
        {"Wed, 16 Sep 2020 12:26:39 GMT", true, false},
        {"Wed, 16 Sep 2020 12:26:40 GMT", false, false}, /* a weak Last-Modified */
        {"Wed", true, false},
        {"W/", true, false},
        {"", true, false},
        {"*", true, false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        ck_assert_msg(st_if_range_match(cases[i].value, strlen(cases[i].value), etag, wed,
                                        cases[i].strong_date) == cases[i].match,
                      "'%s' strong_date=%d", cases[i].value, cases[i].strong_date);
}
END_TEST

/* ---- ranges ----------------------------------------------------------------------- */

static const struct {
    const char *value;
    uint64_t size;
    st_range_t result;
    uint64_t first, last;
} range_cases[] = {
    {"bytes=0-0", 10, ST_RANGE_OK, 0, 0},
    {"bytes=0-9", 10, ST_RANGE_OK, 0, 9},
    {"bytes=0-99", 10, ST_RANGE_OK, 0, 9}, /* clamped to the file */
    {"bytes=3-", 10, ST_RANGE_OK, 3, 9},
    {"bytes=9-", 10, ST_RANGE_OK, 9, 9},
    {"bytes=-3", 10, ST_RANGE_OK, 7, 9},
    {"bytes=-10", 10, ST_RANGE_OK, 0, 9},
    {"bytes=-99", 10, ST_RANGE_OK, 0, 9},
    {"Bytes=2-4", 10, ST_RANGE_OK, 2, 4}, /* the unit is case-insensitive */
    {"bytes= 2-4 ", 10, ST_RANGE_OK, 2, 4},
    {"bytes=10-", 10, ST_RANGE_UNSATISFIABLE, 0, 0},
    {"bytes=10-20", 10, ST_RANGE_UNSATISFIABLE, 0, 0},
    {"bytes=99999999999999999999999-", 10, ST_RANGE_UNSATISFIABLE, 0, 0},
    {"bytes=-0", 10, ST_RANGE_UNSATISFIABLE, 0, 0},
    {"bytes=0-1,3-4", 10, ST_RANGE_NONE, 0, 0}, /* several: the whole file */
    {"bytes=5-2", 10, ST_RANGE_NONE, 0, 0},     /* invalid: ignored */
    {"bytes=-", 10, ST_RANGE_NONE, 0, 0},
    {"bytes=", 10, ST_RANGE_NONE, 0, 0},
    {"bytes=a-b", 10, ST_RANGE_NONE, 0, 0},
    {"bytes=1-2x", 10, ST_RANGE_NONE, 0, 0},
    {"items=0-1", 10, ST_RANGE_NONE, 0, 0},
    {"bytes 0-1", 10, ST_RANGE_NONE, 0, 0},
    {"bytes=0-0", 0, ST_RANGE_NONE, 0, 0}, /* empty file: the whole (empty) file */
    {"bytes=-1", 0, ST_RANGE_NONE, 0, 0},
};

START_TEST(test_range)
{
    uint64_t first = 0, last = 0;
    st_range_t got = st_range_parse(range_cases[_i].value, strlen(range_cases[_i].value),
                                    range_cases[_i].size, &first, &last);
    ck_assert_msg(got == range_cases[_i].result, "'%s' size %llu: got %d", range_cases[_i].value,
                  (unsigned long long)range_cases[_i].size, got);
    if (got == ST_RANGE_OK) {
        ck_assert_uint_eq(first, range_cases[_i].first);
        ck_assert_uint_eq(last, range_cases[_i].last);
    }
}
END_TEST

/* ---- MIME types and URLs ------------------------------------------------------------ */

START_TEST(test_mime)
{
    ck_assert_str_eq(st_mime_builtin("index.html"), "text/html; charset=utf-8");
    ck_assert_str_eq(st_mime_builtin("a/b/INDEX.HTML"), "text/html; charset=utf-8");
    ck_assert_str_eq(st_mime_builtin("app.mjs"), "text/javascript; charset=utf-8");
    ck_assert_str_eq(st_mime_builtin("x.tar.gz"), "application/gzip");
    ck_assert_str_eq(st_mime_builtin("7z.7z"), "application/x-7z-compressed"); /* first */
    ck_assert_str_eq(st_mime_builtin("a.zip"), "application/zip");             /* last */
    ck_assert_str_eq(st_mime_builtin("f.woff2"), "font/woff2");
    ck_assert_str_eq(st_mime_builtin("f.webmanifest"), "application/manifest+json");
    ck_assert_str_eq(st_mime_builtin("f.wasm"), "application/wasm");
    ck_assert_str_eq(st_mime_builtin("p.JPG"), "image/jpeg");
    ck_assert_ptr_null(st_mime_builtin("README"));
    ck_assert_ptr_null(st_mime_builtin(".profile"));
    ck_assert_ptr_null(st_mime_builtin("dir.d/file"));
    ck_assert_ptr_null(st_mime_builtin("a."));
    ck_assert_ptr_null(st_mime_builtin("a.unknownext"));
    ck_assert_str_eq(st_extension("a/b.c/d.TXT"), "TXT");
    ck_assert_ptr_null(st_extension("a/b.c/d"));
}
END_TEST

START_TEST(test_path_encode)
{
    static const char path[] = "/a b/\xc3\xbc?#%\"<>\\^`{|}/ok-._~!$&'()*+,;=:@";
    char out[3 * sizeof path + 1];
    size_t n = st_path_encode(path, sizeof path - 1, out);
    ck_assert_str_eq(out, "/a%20b/%C3%BC%3F%23%25%22%3C%3E%5C%5E%60%7B%7C%7D/ok-._~!$&'()*+,;=:@");
    ck_assert_uint_eq(n, strlen(out));
    static const char nul[] = {'/', 'a', '\0', 'b'};
    st_path_encode(nul, sizeof nul, out);
    ck_assert_str_eq(out, "/a%00b");
}
END_TEST

static Suite *static_suite(void)
{
    Suite *s = suite_create("static_util");
    TCase *tc = tcase_create("open");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_loop_test(tc, test_open, 0, 2 * NOPEN);
    tcase_add_test(tc, test_walk_no_fd_leak);
    suite_add_tcase(s, tc);

    tc = tcase_create("http");
    tcase_add_test(tc, test_http_date);
    tcase_add_test(tc, test_etag);
    tcase_add_test(tc, test_if_range);
    tcase_add_loop_test(tc, test_range, 0, (int)(sizeof range_cases / sizeof range_cases[0]));
    tcase_add_test(tc, test_mime);
    tcase_add_test(tc, test_path_encode);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(static_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

/* test_config.c — core/config.c: the YAML node tree, its errors and its
 * typed getters. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"

static tw_conf_error_t err;

static tw_conf_doc_t *load(const char *yaml)
{
    memset(&err, 0, sizeof(err));
    return tw_conf_load_string("t.yaml", yaml, strlen(yaml), &err);
}

/* Loads yaml, which must fail with exactly msg. */
static void expect_error(const char *yaml, const char *msg)
{
    tw_conf_doc_t *doc = load(yaml);
    if (doc)
        tw_conf_doc_free(doc);
    ck_assert_msg(doc == NULL, "loaded: %s", yaml);
    ck_assert_str_eq(err.message, msg);
}

/* Loads yaml, which must fail with a message starting with prefix. */
static void expect_error_prefix(const char *yaml, const char *prefix)
{
    tw_conf_doc_t *doc = load(yaml);
    if (doc)
        tw_conf_doc_free(doc);
    ck_assert_msg(doc == NULL, "loaded: %s", yaml);
    ck_assert_msg(strncmp(err.message, prefix, strlen(prefix)) == 0, "got '%s', want '%s...'",
                  err.message, prefix);
}

/* Follows a dotted path of map keys and [i] list indices from root. */
static const tw_conf_node_t *at(const tw_conf_doc_t *doc, const char *path)
{
    const tw_conf_node_t *n = tw_conf_root(doc);
    char buf[256];
    snprintf(buf, sizeof(buf), "%s", path);
    for (char *tok = strtok(buf, "."); tok && n; tok = strtok(NULL, ".")) {
        char *br = strchr(tok, '[');
        if (br)
            *br = '\0';
        if (*tok)
            n = tw_conf_map_get(n, tok);
        while (br && n) {
            n = tw_conf_list_item(n, strtoul(br + 1, NULL, 10));
            br = strchr(br + 1, '[');
        }
    }
    return n;
}

/* ---- syntax and structure errors --------------------------------------- */

static const struct {
    const char *yaml;
    const char *msg;
} load_errors[] = {
    {"a: [1, 2\n",
     "t.yaml:2:1: did not find expected ',' or ']' (while parsing a flow sequence at line 1 "
     "column 4)"},
    {"a: b: c", "t.yaml:1:5: mapping values are not allowed in this context"},
    {"a:\n\tb: 1\n",
     "t.yaml:2:1: found character that cannot start any token: a tab (YAML indents with spaces "
     "only)"},
    {"a: \xff\n", "t.yaml:1:4: invalid leading UTF-8 octet (byte 0xFF)"},
    {"a: 1\nb: 2\na: 3\n", "t.yaml:3:1: a: duplicate key 'a' (first at line 1)"},
    {"x:\n  y: 1\n  z: 2\n  y: 3\n", "t.yaml:4:3: x.y: duplicate key 'y' (first at line 2)"},
    {"l:\n  - {k: 1, k: 2}\n", "t.yaml:2:12: l[0].k: duplicate key 'k' (first at line 2)"},
    {"a: 1\n---\nb: 2\n",
     "t.yaml:2:1: a config file holds one YAML document; this is a second one"},
    {"a: !foo x", "t.yaml:1:4: a: unknown tag !foo (Twister knows only !include)"},
    {"a: !foo {b: 1}", "t.yaml:1:4: unknown tag !foo (Twister knows only !include)"},
    {"a: !include {b: 1}", "t.yaml:1:4: !include takes a file name, not a map"},
    {"!foo a: 1", "t.yaml:1:1: a map key cannot have a tag (!foo)"},
    {"a: *x", "t.yaml:1:4: a: unknown alias *x (an anchor must be complete before it is used)"},
    {"a: &x [1, *x]", "t.yaml:1:11: a[1]: unknown alias *x (an anchor must be complete before "
                      "it is used)"},
    {"a: &x k\n*x : 1\n", "t.yaml:2:1: an alias cannot be a map key"},
    {"[a]: 1\n", "t.yaml:1:1: a map key must be a scalar"},
    {"~: 1\n", "t.yaml:1:1: empty map key"},
    {"'': 1\n", "t.yaml:1:1: empty map key"},
    {"a: \"x\\0y\"\n", "t.yaml:1:4: a: a value contains a NUL byte"},
    {"a: &x 1\nb:\n  <<: *x\n", "t.yaml:3:7: b.<<: '<<' merges maps: *x is not a map or a list "
                                "of maps"},
    {"b:\n  <<: [1]\n",
     "t.yaml:2:7: b.<<: '<<' merges maps: expected a map or a list of maps (e.g. <<: *defaults)"},
    {"d: &d {a: 1}\nb:\n  <<: *d\n  <<: *d\n",
     "t.yaml:4:3: b: duplicate key '<<' (merge several maps with <<: [*a, *b])"},
    {"a: ${TW_TEST_SURELY_UNSET}",
     "t.yaml:1:4: a: environment variable TW_TEST_SURELY_UNSET is not set (write "
     "${TW_TEST_SURELY_UNSET:-default} to give a default)"},
    {"l: [x, 'y${TW_TEST_SURELY_UNSET}']",
     "t.yaml:1:8: l[1]: environment variable TW_TEST_SURELY_UNSET is not set (write "
     "${TW_TEST_SURELY_UNSET:-default} to give a default)"},
    {"a: ${1X}", "t.yaml:1:4: a: bad variable reference '${1X}': expected ${NAME} or "
                 "${NAME:-default} (write $$ for a literal '$')"},
    {"a: ${A-b}", "t.yaml:1:4: a: bad variable reference '${A-b}': expected ${NAME} or "
                  "${NAME:-default} (write $$ for a literal '$')"},
    {"a: ${}", "t.yaml:1:4: a: bad variable reference '${}': expected ${NAME} or "
               "${NAME:-default} (write $$ for a literal '$')"},
    {"a: x${X", "t.yaml:1:4: a: unterminated '${' (write $$ for a literal '$')"},
};

START_TEST(test_load_errors)
{
    expect_error(load_errors[_i].yaml, load_errors[_i].msg);
}
END_TEST

START_TEST(test_depth_limit)
{
    char buf[512];
    size_t n = 0;
    for (int i = 0; i < 70; i++)
        buf[n++] = '[';
    buf[n] = '\0';
    expect_error_prefix(buf, "t.yaml:1:65: ");
    ck_assert_ptr_nonnull(strstr(err.message, "nested deeper than 64 levels"));

    /* 64 levels load. */
    n = 0;
    for (int i = 0; i < 64; i++)
        buf[n++] = '[';
    for (int i = 0; i < 64; i++)
        buf[n++] = ']';
    buf[n] = '\0';
    tw_conf_doc_t *doc = load(buf);
    ck_assert_msg(doc != NULL, "%s", err.message);
    tw_conf_doc_free(doc);

    /* An alias may not push a subtree past the limit either. */
    n = (size_t)snprintf(buf, sizeof(buf), "a: &a ");
    for (int i = 0; i < 40; i++)
        buf[n++] = '[';
    for (int i = 0; i < 40; i++)
        buf[n++] = ']';
    n += (size_t)snprintf(buf + n, sizeof(buf) - n, "\nb: ");
    for (int i = 0; i < 30; i++)
        buf[n++] = '[';
    n += (size_t)snprintf(buf + n, sizeof(buf) - n, "*a");
    for (int i = 0; i < 30; i++)
        buf[n++] = ']';
    buf[n] = '\0';
    expect_error_prefix(buf, "t.yaml:2:34: b");
    ck_assert_ptr_nonnull(strstr(err.message, "alias *a nests deeper than 64 levels"));
}
END_TEST

START_TEST(test_billion_laughs)
{
    const char *lol = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
                      "b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
                      "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
                      "d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
                      "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\n"
                      "f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]\n"
                      "g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]\n"
                      "h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]\n"
                      "i: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h]\n";
    expect_error_prefix(lol, "t.yaml:");
    ck_assert_msg(strstr(err.message, "past 200000 nodes") != NULL, "%s", err.message);

    /* Merges count too. */
    const char *merge = "a: &a {k0: [x, x, x, x, x, x, x, x, x, x], k1: [x, x, x, x, x, x, x]}\n"
                        "b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
                        "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
                        "d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
                        "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\n"
                        "f: {<<: *a, z: [*e, *e, *e, *e, *e, *e]}\n";
    expect_error_prefix(merge, "t.yaml:");
    ck_assert_msg(strstr(err.message, "200000 nodes") != NULL, "%s", err.message);
}
END_TEST

START_TEST(test_no_include_flag)
{
    const char *y = "a: !include other.yaml\n";
    tw_conf_doc_t *doc = tw_conf_load_string_ex("t.yaml", y, strlen(y), TW_CONF_NO_INCLUDE, &err);
    ck_assert_ptr_null(doc);
    ck_assert_str_eq(err.message, "t.yaml:1:4: a: !include is not allowed here");
}
END_TEST

START_TEST(test_missing_file)
{
    tw_conf_doc_t *doc = tw_conf_load("/nonexistent/twister.yaml", &err);
    ck_assert_ptr_null(doc);
    ck_assert_str_eq(err.message,
                     "/nonexistent/twister.yaml: cannot read: No such file or directory");
    doc = tw_conf_load("/", &err);
    ck_assert_ptr_null(doc);
    ck_assert_str_eq(err.message, "/: cannot read: a directory, not a regular file");
}
END_TEST

/* ---- the node API ------------------------------------------------------ */

START_TEST(test_nodes)
{
    tw_conf_doc_t *doc = load("# comment\n"
                              "workers: 4\n"
                              "servers:\n"
                              "  - listen: [\"127.0.0.1:8080\", 8081]\n"
                              "    routes:\n"
                              "      - path: /hello\n"
                              "        hello: {message: Hi}\n"
                              "empty:\n"
                              "tilde: ~\n"
                              "null_word: null\n"
                              "quoted_null: 'null'\n"
                              "block: |\n"
                              "  two\n"
                              "  lines\n");
    ck_assert_msg(doc != NULL, "%s", err.message);
    const tw_conf_node_t *root = tw_conf_root(doc);
    ck_assert_int_eq(tw_conf_type(root), TW_CONF_MAP);
    ck_assert_str_eq(tw_conf_path(root), "");
    ck_assert_uint_eq(tw_conf_line(root), 2);
    ck_assert_uint_eq(tw_conf_column(root), 1);
    ck_assert_uint_eq(tw_conf_count(root), 7);
    ck_assert_str_eq(tw_conf_map_key(root, 0), "workers");
    ck_assert_str_eq(tw_conf_map_key(root, 6), "block");
    ck_assert_ptr_null(tw_conf_map_key(root, 7));
    ck_assert_ptr_null(tw_conf_map_value(root, 7));
    ck_assert_ptr_null(tw_conf_map_get(root, "nope"));
    ck_assert_ptr_null(tw_conf_list_item(root, 0));
    ck_assert_ptr_null(tw_conf_scalar(root));
    ck_assert_str_eq(tw_conf_doc_name(doc), "t.yaml");

    const tw_conf_node_t *w = tw_conf_map_get(root, "workers");
    ck_assert_ptr_eq(w, tw_conf_map_value(root, 0));
    ck_assert_int_eq(tw_conf_type(w), TW_CONF_SCALAR);
    ck_assert_str_eq(tw_conf_scalar(w), "4");
    ck_assert_str_eq(tw_conf_file(w), "t.yaml");
    ck_assert_uint_eq(tw_conf_line(w), 2);
    ck_assert_uint_eq(tw_conf_column(w), 10);
    ck_assert_str_eq(tw_conf_path(w), "workers");
    ck_assert_uint_eq(tw_conf_count(w), 0);

    const tw_conf_node_t *k = tw_conf_map_key_node(root, 0);
    ck_assert_str_eq(tw_conf_scalar(k), "workers");
    ck_assert_uint_eq(tw_conf_line(k), 2);
    ck_assert_uint_eq(tw_conf_column(k), 1);
    ck_assert_str_eq(tw_conf_path(k), "workers");

    const tw_conf_node_t *l = at(doc, "servers[0].listen");
    ck_assert_int_eq(tw_conf_type(l), TW_CONF_LIST);
    ck_assert_str_eq(tw_conf_path(l), "servers[0].listen");
    ck_assert_uint_eq(tw_conf_count(l), 2);
    ck_assert_str_eq(tw_conf_scalar(tw_conf_list_item(l, 1)), "8081");
    ck_assert_str_eq(tw_conf_path(tw_conf_list_item(l, 1)), "servers[0].listen[1]");
    ck_assert_uint_eq(tw_conf_column(tw_conf_list_item(l, 1)), 32);
    ck_assert_ptr_null(tw_conf_list_item(l, 2));

    const tw_conf_node_t *m = at(doc, "servers[0].routes[0].hello.message");
    ck_assert_str_eq(tw_conf_scalar(m), "Hi");
    ck_assert_str_eq(tw_conf_path(m), "servers[0].routes[0].hello.message");
    ck_assert_uint_eq(tw_conf_line(m), 7);
    ck_assert_uint_eq(tw_conf_column(m), 26);

    /* YAML null is the empty scalar; a quoted 'null' is a string. */
    ck_assert_str_eq(tw_conf_scalar(at(doc, "empty")), "");
    ck_assert_str_eq(tw_conf_scalar(at(doc, "tilde")), "");
    ck_assert_str_eq(tw_conf_scalar(at(doc, "null_word")), "");
    ck_assert_str_eq(tw_conf_scalar(at(doc, "quoted_null")), "null");
    ck_assert_str_eq(tw_conf_scalar(at(doc, "block")), "two\nlines\n");
    tw_conf_doc_free(doc);

    /* An empty file is the empty scalar. */
    doc = load("# nothing\n");
    ck_assert_ptr_nonnull(doc);
    ck_assert_int_eq(tw_conf_type(tw_conf_root(doc)), TW_CONF_SCALAR);
    ck_assert_str_eq(tw_conf_scalar(tw_conf_root(doc)), "");
    ck_assert_uint_eq(tw_conf_line(tw_conf_root(doc)), 1);
    tw_conf_doc_free(doc);
    tw_conf_doc_free(NULL);

    /* NULL nodes (a missing key) are safe everywhere. */
    ck_assert_int_eq(tw_conf_type(NULL), 0);
    ck_assert_str_eq(tw_conf_file(NULL), "");
    ck_assert_uint_eq(tw_conf_line(NULL), 0);
    ck_assert_uint_eq(tw_conf_column(NULL), 0);
    ck_assert_str_eq(tw_conf_path(NULL), "");
    ck_assert_ptr_null(tw_conf_scalar(NULL));
    ck_assert_uint_eq(tw_conf_count(NULL), 0);
    ck_assert_ptr_null(tw_conf_map_get(NULL, "a"));
    ck_assert_ptr_null(tw_conf_map_key(NULL, 0));
    ck_assert_ptr_null(tw_conf_map_key_node(NULL, 0));
    ck_assert_ptr_null(tw_conf_map_value(NULL, 0));
    ck_assert_ptr_null(tw_conf_list_item(NULL, 0));
    const char *s;
    long long i;
    bool b;
    uint64_t u;
    static const char *const keys[] = {"a", NULL};
    ck_assert_int_eq(tw_conf_get_string(NULL, &s, &err), -1);
    ck_assert_str_eq(err.message, "expected a string, got nothing");
    ck_assert_int_eq(tw_conf_get_int(NULL, 0, 1, &i, &err), -1);
    ck_assert_str_eq(err.message, "expected an integer, got nothing");
    ck_assert_int_eq(tw_conf_get_bool(NULL, &b, &err), -1);
    ck_assert_int_eq(tw_conf_get_size(NULL, &u, &err), -1);
    ck_assert_int_eq(tw_conf_get_duration_ms(NULL, &u, &err), -1);
    ck_assert_int_eq(tw_conf_check_keys(NULL, keys, &err), -1);
    ck_assert_str_eq(err.message, "expected a map, got nothing");
}
END_TEST

START_TEST(test_big_map)
{
    /* Lookups are binary searches over a sorted index; check many keys. */
    size_t cap = 200000, n = 0;
    char *y = malloc(cap);
    for (int i = 0; i < 5000; i++)
        n += (size_t)snprintf(y + n, cap - n, "k%d: %d\n", (i * 7919) % 5000, i);
    tw_conf_doc_t *doc = tw_conf_load_string("big.yaml", y, n, &err);
    free(y);
    ck_assert_msg(doc != NULL, "%s", err.message);
    const tw_conf_node_t *root = tw_conf_root(doc);
    ck_assert_uint_eq(tw_conf_count(root), 5000);
    for (int i = 0; i < 5000; i++) {
        char key[16], val[16];
        snprintf(key, sizeof(key), "k%d", (i * 7919) % 5000);
        snprintf(val, sizeof(val), "%d", i);
        ck_assert_str_eq(tw_conf_scalar(tw_conf_map_get(root, key)), val);
        ck_assert_str_eq(tw_conf_map_key(root, (size_t)i), key);
    }
    tw_conf_doc_free(doc);
}
END_TEST

/* ---- typed getters ----------------------------------------------------- */

/* A one-scalar document "v: <text>" and its node. */
static tw_conf_doc_t *scalar_doc(const char *text, const tw_conf_node_t **node)
{
    char y[256];
    snprintf(y, sizeof(y), "v: %s\n", text);
    tw_conf_doc_t *doc = load(y);
    ck_assert_msg(doc != NULL, "%s: %s", text, err.message);
    *node = tw_conf_map_get(tw_conf_root(doc), "v");
    return doc;
}

static const struct {
    const char *text;
    long long min, max;
    int ok;
    long long value;
    const char *msg;
} int_cases[] = {
    {"0", 0, 10, 1, 0, NULL},
    {"10", 0, 10, 1, 10, NULL},
    {"-5", -10, 10, 1, -5, NULL},
    {"007", 0, 10, 1, 7, NULL},
    {"9223372036854775807", 0, 9223372036854775807LL, 1, 9223372036854775807LL, NULL},
    {"-9223372036854775808", -9223372036854775807LL - 1, 0, 1, -9223372036854775807LL - 1, NULL},
    {"11", 0, 10, 0, 0, "t.yaml:1:4: v: expected an integer from 0 to 10, got '11'"},
    {"-1", 0, 10, 0, 0, "t.yaml:1:4: v: expected an integer from 0 to 10, got '-1'"},
    {"9223372036854775808", 0, 10, 0, 0,
     "t.yaml:1:4: v: expected an integer from 0 to 10, got '9223372036854775808'"},
    {"99999999999999999999999", 0, 10, 0, 0,
     "t.yaml:1:4: v: expected an integer from 0 to 10, got '99999999999999999999999'"},
    {"0x10", 0, 100, 0, 0, "t.yaml:1:4: v: expected an integer, got '0x10'"},
    {"+1", 0, 100, 0, 0, "t.yaml:1:4: v: expected an integer, got '+1'"},
    {"1.5", 0, 100, 0, 0, "t.yaml:1:4: v: expected an integer, got '1.5'"},
    {"'1 '", 0, 100, 0, 0, "t.yaml:1:4: v: expected an integer, got '1 '"},
    {"'-'", 0, 100, 0, 0, "t.yaml:1:4: v: expected an integer, got '-'"},
    {"", 0, 100, 0, 0, "t.yaml:1:3: v: expected an integer, got an empty value"},
    {"[1]", 0, 100, 0, 0, "t.yaml:1:4: v: expected an integer, got a list"},
};

START_TEST(test_get_int)
{
    const tw_conf_node_t *n;
    tw_conf_doc_t *doc = scalar_doc(int_cases[_i].text, &n);
    long long v = -42;
    int rc = tw_conf_get_int(n, int_cases[_i].min, int_cases[_i].max, &v, &err);
    if (int_cases[_i].ok) {
        ck_assert_int_eq(rc, 0);
        ck_assert_int_eq(v, int_cases[_i].value);
    } else {
        ck_assert_int_eq(rc, -1);
        ck_assert_int_eq(v, -42);
        ck_assert_str_eq(err.message, int_cases[_i].msg);
    }
    tw_conf_doc_free(doc);
}
END_TEST

static const struct {
    const char *text;
    int value; /* -1: error */
} bool_cases[] = {
    {"true", 1}, {"True", 1}, {"YES", 1}, {"on", 1}, {"false", 0},  {"No", 0},
    {"off", 0},  {"1", -1},   {"y", -1},  {"", -1},  {"truth", -1},
};

START_TEST(test_get_bool)
{
    const tw_conf_node_t *n;
    tw_conf_doc_t *doc = scalar_doc(bool_cases[_i].text, &n);
    bool v;
    int rc = tw_conf_get_bool(n, &v, &err);
    if (bool_cases[_i].value < 0) {
        ck_assert_int_eq(rc, -1);
        ck_assert_msg(strstr(err.message, "v: expected true or false (or yes/no, on/off), got"),
                      "%s", err.message);
    } else {
        ck_assert_int_eq(rc, 0);
        ck_assert_int_eq(v, bool_cases[_i].value);
    }
    tw_conf_doc_free(doc);
}
END_TEST

static const struct {
    const char *text;
    int ok;
    uint64_t value;
    const char *msg;
} size_cases[] = {
    {"0", 1, 0, NULL},
    {"512", 1, 512, NULL},
    {"64k", 1, 65536, NULL},
    {"64K", 1, 65536, NULL},
    {"1m", 1, 1048576, NULL},
    {"2g", 1, 2147483648ull, NULL},
    {"18446744073709551615", 1, UINT64_MAX, NULL},
    {"17179869183g", 1, 17179869183ull << 30, NULL},
    {"17179869184g", 0, 0, "t.yaml:1:4: v: size '17179869184g' is too large"},
    {"18446744073709551616", 0, 0, "t.yaml:1:4: v: size '18446744073709551616' is too large"},
    {"1t", 0, 0,
     "t.yaml:1:4: v: expected a size (bytes, or a number with k, m or g: 64k, 1m), got '1t'"},
    {"1kb", 0, 0,
     "t.yaml:1:4: v: expected a size (bytes, or a number with k, m or g: 64k, 1m), got '1kb'"},
    {"k", 0, 0,
     "t.yaml:1:4: v: expected a size (bytes, or a number with k, m or g: 64k, 1m), got 'k'"},
    {"-1", 0, 0,
     "t.yaml:1:4: v: expected a size (bytes, or a number with k, m or g: 64k, 1m), got '-1'"},
    {"1.5m", 0, 0,
     "t.yaml:1:4: v: expected a size (bytes, or a number with k, m or g: 64k, 1m), got '1.5m'"},
    {"{a: 1}", 0, 0,
     "t.yaml:1:4: v: expected a size (bytes, or a number with k, m or g: 64k, 1m), got a map"},
};

START_TEST(test_get_size)
{
    const tw_conf_node_t *n;
    tw_conf_doc_t *doc = scalar_doc(size_cases[_i].text, &n);
    uint64_t v = 42;
    int rc = tw_conf_get_size(n, &v, &err);
    if (size_cases[_i].ok) {
        ck_assert_int_eq(rc, 0);
        ck_assert_uint_eq(v, size_cases[_i].value);
    } else {
        ck_assert_int_eq(rc, -1);
        ck_assert_uint_eq(v, 42);
        ck_assert_str_eq(err.message, size_cases[_i].msg);
    }
    tw_conf_doc_free(doc);
}
END_TEST

#define DURATION_HELP                                                                              \
    "expected a duration (500ms, 30s, 5m, 1h30m, 2d; a bare number is seconds), got "

static const struct {
    const char *text;
    int ok;
    uint64_t ms;
    const char *msg;
} duration_cases[] = {
    {"0", 1, 0, NULL},
    {"30", 1, 30000, NULL},
    {"500ms", 1, 500, NULL},
    {"30s", 1, 30000, NULL},
    {"5m", 1, 300000, NULL},
    {"1h", 1, 3600000, NULL},
    {"1h30m", 1, 5400000, NULL},
    {"1m30s500ms", 1, 90500, NULL},
    {"2d", 1, 172800000, NULL},
    {"18446744073709551615ms", 1, UINT64_MAX, NULL},
    {"18446744073709551615s", 0, 0, "t.yaml:1:4: v: duration '18446744073709551615s' is too long"},
    {"18446744073709551615ms1ms", 0, 0,
     "t.yaml:1:4: v: duration '18446744073709551615ms1ms' is too long"},
    {"1h30", 0, 0, "t.yaml:1:4: v: " DURATION_HELP "'1h30'"},
    {"1.5s", 0, 0, "t.yaml:1:4: v: " DURATION_HELP "'1.5s'"},
    {"s", 0, 0, "t.yaml:1:4: v: " DURATION_HELP "'s'"},
    {"10 s", 0, 0, "t.yaml:1:4: v: " DURATION_HELP "'10 s'"},
    {"1w", 0, 0, "t.yaml:1:4: v: " DURATION_HELP "'1w'"},
    {"-1s", 0, 0, "t.yaml:1:4: v: " DURATION_HELP "'-1s'"},
    {"", 0, 0, "t.yaml:1:3: v: " DURATION_HELP "an empty value"},
};

START_TEST(test_get_duration)
{
    const tw_conf_node_t *n;
    tw_conf_doc_t *doc = scalar_doc(duration_cases[_i].text, &n);
    uint64_t v = 42;
    int rc = tw_conf_get_duration_ms(n, &v, &err);
    if (duration_cases[_i].ok) {
        ck_assert_msg(rc == 0, "%s: %s", duration_cases[_i].text, err.message);
        ck_assert_uint_eq(v, duration_cases[_i].ms);
    } else {
        ck_assert_int_eq(rc, -1);
        ck_assert_uint_eq(v, 42);
        ck_assert_str_eq(err.message, duration_cases[_i].msg);
    }
    tw_conf_doc_free(doc);
}
END_TEST

START_TEST(test_get_string)
{
    tw_conf_doc_t *doc = load("s: hello\nl: [1]\nm: {a: b}\n");
    ck_assert_ptr_nonnull(doc);
    const char *s = NULL;
    ck_assert_int_eq(tw_conf_get_string(at(doc, "s"), &s, &err), 0);
    ck_assert_str_eq(s, "hello");
    ck_assert_int_eq(tw_conf_get_string(at(doc, "l"), &s, &err), -1);
    ck_assert_str_eq(err.message, "t.yaml:2:4: l: expected a string, got a list");
    ck_assert_int_eq(tw_conf_get_string(at(doc, "m"), &s, NULL), -1); /* err may be NULL */
    ck_assert_int_eq(tw_conf_get_string(at(doc, "m"), &s, &err), -1);
    ck_assert_str_eq(err.message, "t.yaml:3:4: m: expected a string, got a map");
    tw_conf_doc_free(doc);
}
END_TEST

/* ---- errors and did you mean ------------------------------------------- */

START_TEST(test_error_format)
{
    tw_conf_doc_t *doc = load("limits:\n  body: 10x\n");
    ck_assert_ptr_nonnull(doc);
    ck_assert_int_eq(tw_conf_error(&err, at(doc, "limits.body"), "bad %s %d", "thing", 7), -1);
    ck_assert_str_eq(err.message, "t.yaml:2:9: limits.body: bad thing 7");
    /* The root has no path: no empty "path: " part. */
    tw_conf_error(&err, tw_conf_root(doc), "expected %s", "servers");
    ck_assert_str_eq(err.message, "t.yaml:1:1: expected servers");
    tw_conf_error(&err, NULL, "no node");
    ck_assert_str_eq(err.message, "no node");
    ck_assert_int_eq(tw_conf_error(NULL, tw_conf_root(doc), "x"), -1);
    /* Long messages are cut, never overflow. */
    char big[2000];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    tw_conf_error(&err, at(doc, "limits.body"), "%s", big);
    ck_assert_uint_eq(strlen(err.message), sizeof(err.message) - 1);
    tw_conf_doc_free(doc);
}
END_TEST

START_TEST(test_check_keys)
{
    static const char *const allowed[] = {"request_line", "header_size", "headers", "body", NULL};
    tw_conf_doc_t *doc = load("ok: {body: 1, headers: 2}\n"
                              "typo: {body: 1, bdy: 2}\n"
                              "swap: {hedaers: 1}\n"
                              "case: {Body: 1}\n"
                              "far: {zzz: 1}\n"
                              "list: [1]\n");
    ck_assert_ptr_nonnull(doc);
    ck_assert_int_eq(tw_conf_check_keys(at(doc, "ok"), allowed, &err), 0);
    ck_assert_int_eq(tw_conf_check_keys(at(doc, "typo"), allowed, &err), -1);
    ck_assert_str_eq(err.message, "t.yaml:2:17: typo.bdy: unknown key 'bdy'; did you mean 'body'?");
    ck_assert_int_eq(tw_conf_check_keys(at(doc, "swap"), allowed, &err), -1);
    ck_assert_str_eq(err.message,
                     "t.yaml:3:8: swap.hedaers: unknown key 'hedaers'; did you mean 'headers'?");
    ck_assert_int_eq(tw_conf_check_keys(at(doc, "case"), allowed, &err), -1);
    ck_assert_str_eq(err.message,
                     "t.yaml:4:8: case.Body: unknown key 'Body'; did you mean 'body'?");
    ck_assert_int_eq(tw_conf_check_keys(at(doc, "far"), allowed, &err), -1);
    ck_assert_str_eq(err.message, "t.yaml:5:7: far.zzz: unknown key 'zzz' (expected one of: "
                                  "request_line, header_size, headers, body)");
    ck_assert_int_eq(tw_conf_check_keys(at(doc, "list"), allowed, &err), -1);
    ck_assert_str_eq(err.message, "t.yaml:6:7: list: expected a map, got a list");
    tw_conf_doc_free(doc);
}
END_TEST

static const struct {
    const char *a, *b;
    size_t d;
} distances[] = {
    {"", "", 0},        {"abc", "abc", 0},         {"abc", "ABC", 0},
    {"", "abc", 3},     {"kitten", "sitting", 3},  {"hanlder", "handler", 1},
    {"bdy", "body", 1}, {"workres", "workers", 1}, {"ab", "ba", 1},
    {"ca", "abc", 3},
};

START_TEST(test_edit_distance)
{
    ck_assert_uint_eq(tw_conf_edit_distance(distances[_i].a, distances[_i].b), distances[_i].d);
    ck_assert_uint_eq(tw_conf_edit_distance(distances[_i].b, distances[_i].a), distances[_i].d);
}
END_TEST

START_TEST(test_suggest)
{
    static const char *const keys[] = {"workers", "user", "servers", "modules", "limits"};
    ck_assert_str_eq(tw_conf_suggest("worker", keys, 5), "workers");
    ck_assert_str_eq(tw_conf_suggest("sevrers", keys, 5), "servers");
    ck_assert_str_eq(tw_conf_suggest("limit", keys, 5), "limits");
    ck_assert_str_eq(tw_conf_suggest("usr", keys, 5), "user");
    ck_assert_ptr_null(tw_conf_suggest("x", keys, 5));
    ck_assert_ptr_null(tw_conf_suggest("hello", keys, 5));
    ck_assert_ptr_null(tw_conf_suggest("static", keys, 5));
    ck_assert_ptr_null(tw_conf_suggest("worker", keys, 0));
}
END_TEST

/* ---- ${VAR} ------------------------------------------------------------ */

START_TEST(test_env)
{
    setenv("TW_T_A", "hello", 1);
    setenv("TW_T_EMPTY", "", 1);
    unsetenv("TW_T_UNSET");
    tw_conf_doc_t *doc = load("a: ${TW_T_A}\n"
                              "b: x${TW_T_A}y${TW_T_A}\n"
                              "c: ${TW_T_UNSET:-def ault}\n"
                              "d: ${TW_T_EMPTY:-def}\n"
                              "e: '${TW_T_EMPTY}'\n"
                              "f: ${TW_T_A:-def}\n"
                              "g: \"$${TW_T_A} costs $$5\"\n"
                              "h: '^/a$'\n"
                              "i: a$b $ $\n"
                              "j: ${TW_T_UNSET:-}\n"
                              "${TW_T_A}: keys are not substituted\n"
                              "l: [\"${TW_T_A}\"]\n");
    ck_assert_msg(doc != NULL, "%s", err.message);
    ck_assert_str_eq(tw_conf_scalar(at(doc, "a")), "hello");
    ck_assert_str_eq(tw_conf_scalar(at(doc, "b")), "xhelloyhello");
    ck_assert_str_eq(tw_conf_scalar(at(doc, "c")), "def ault");
    ck_assert_str_eq(tw_conf_scalar(at(doc, "d")), "def");
    ck_assert_str_eq(tw_conf_scalar(at(doc, "e")), "");
    ck_assert_str_eq(tw_conf_scalar(at(doc, "f")), "hello");
    ck_assert_str_eq(tw_conf_scalar(at(doc, "g")), "${TW_T_A} costs $5");
    ck_assert_str_eq(tw_conf_scalar(at(doc, "h")), "^/a$");
    ck_assert_str_eq(tw_conf_scalar(at(doc, "i")), "a$b $ $");
    ck_assert_str_eq(tw_conf_scalar(at(doc, "j")), "");
    ck_assert_str_eq(tw_conf_scalar(tw_conf_map_get(tw_conf_root(doc), "${TW_T_A}")),
                     "keys are not substituted");
    ck_assert_str_eq(tw_conf_scalar(at(doc, "l[0]")), "hello");
    tw_conf_doc_free(doc);
    unsetenv("TW_T_A");
    unsetenv("TW_T_EMPTY");
}
END_TEST

START_TEST(test_env_value_limit)
{
    /* 16 x 1 MiB is exactly the limit; one byte more is refused. The old
     * check ran only when the buffer grew, and it grows by doubling. */
    size_t mib = 1u << 20;
    char *big = malloc(mib + 1);
    ck_assert_ptr_nonnull(big);
    memset(big, 'x', mib);
    big[mib] = '\0';
    setenv("TW_T_MIB", big, 1);
    free(big);
    char yaml[512] = "a: ";
    for (int i = 0; i < 16; i++)
        strcat(yaml, "${TW_T_MIB}");
    tw_conf_doc_t *doc = load(yaml);
    ck_assert_msg(doc != NULL, "%s", err.message);
    ck_assert_uint_eq(strlen(tw_conf_scalar(at(doc, "a"))), TW_CONF_MAX_VALUE);
    tw_conf_doc_free(doc);

    static const char *const over[] = {"${TW_T_MIB}", "y", "${TW_T_MIB}${TW_T_MIB}${TW_T_MIB}"};
    for (size_t i = 0; i < sizeof(over) / sizeof(over[0]); i++) {
        char more[600];
        snprintf(more, sizeof(more), "b: 1\n%s%s\n", yaml, over[i]);
        doc = load(more);
        ck_assert_ptr_null(doc);
        ck_assert_str_eq(err.message,
                         "t.yaml:2:4: a: value longer than 16 MiB after ${VAR} substitution");
    }
    unsetenv("TW_T_MIB");
}
END_TEST

/* ---- anchors, aliases, merges ------------------------------------------ */

START_TEST(test_aliases)
{
    tw_conf_doc_t *doc = load("defaults: &d\n"
                              "  root: /srv\n"
                              "  index: [index.html]\n"
                              "a: *d\n"
                              "b:\n"
                              "  <<: *d\n"
                              "  root: /other\n"
                              "  extra: 1\n"
                              "s: &s scalar\n"
                              "t: *s\n"
                              "two: &two {x: 2, y: 2}\n"
                              "c:\n"
                              "  z: 0\n"
                              "  <<: [*two, *d]\n"
                              "inline:\n"
                              "  <<: {p: 1}\n"
                              "  q: 2\n"
                              "only: {<<: *two}\n"
                              "'<<': literal\n");
    ck_assert_msg(doc != NULL, "%s", err.message);
    /* An alias is a copy: its path is where it is used, its position is
     * the anchored text. */
    const tw_conf_node_t *a = at(doc, "a");
    ck_assert_int_eq(tw_conf_type(a), TW_CONF_MAP);
    ck_assert_ptr_ne(a, at(doc, "defaults"));
    ck_assert_str_eq(tw_conf_path(a), "a");
    ck_assert_str_eq(tw_conf_path(at(doc, "a.root")), "a.root");
    ck_assert_str_eq(tw_conf_path(at(doc, "a.index[0]")), "a.index[0]");
    ck_assert_str_eq(tw_conf_scalar(at(doc, "a.index[0]")), "index.html");
    ck_assert_uint_eq(tw_conf_line(at(doc, "a.root")), 2);
    ck_assert_str_eq(tw_conf_scalar(at(doc, "t")), "scalar");
    ck_assert_str_eq(tw_conf_path(at(doc, "t")), "t");

    /* Merge: explicit keys win wherever they are; merged keys take the
     * place of "<<". */
    const tw_conf_node_t *b = at(doc, "b");
    ck_assert_uint_eq(tw_conf_count(b), 3);
    ck_assert_str_eq(tw_conf_map_key(b, 0), "index");
    ck_assert_str_eq(tw_conf_map_key(b, 1), "root");
    ck_assert_str_eq(tw_conf_map_key(b, 2), "extra");
    ck_assert_str_eq(tw_conf_scalar(at(doc, "b.root")), "/other");
    ck_assert_str_eq(tw_conf_path(at(doc, "b.index")), "b.index");
    ck_assert_str_eq(tw_conf_scalar(at(doc, "b.index[0]")), "index.html");

    /* A list of maps: earlier maps win. */
    const tw_conf_node_t *c = at(doc, "c");
    ck_assert_uint_eq(tw_conf_count(c), 5);
    ck_assert_str_eq(tw_conf_map_key(c, 0), "z");
    ck_assert_str_eq(tw_conf_map_key(c, 1), "x");
    ck_assert_str_eq(tw_conf_map_key(c, 2), "y");
    ck_assert_str_eq(tw_conf_map_key(c, 3), "root");
    ck_assert_str_eq(tw_conf_map_key(c, 4), "index");
    ck_assert_str_eq(tw_conf_path(at(doc, "c.x")), "c.x");

    /* A map made only of a merge (found by the fuzzer). */
    ck_assert_uint_eq(tw_conf_count(at(doc, "only")), 2);
    ck_assert_str_eq(tw_conf_scalar(at(doc, "only.y")), "2");
    ck_assert_str_eq(tw_conf_scalar(at(doc, "inline.p")), "1");
    ck_assert_uint_eq(tw_conf_count(at(doc, "inline")), 2);
    /* A quoted '<<' is an ordinary key. */
    ck_assert_str_eq(tw_conf_scalar(tw_conf_map_get(tw_conf_root(doc), "<<")), "literal");
    tw_conf_doc_free(doc);

    /* A redefined anchor means its latest definition. */
    doc = load("a: &x 1\nb: &x 2\nc: *x\n");
    ck_assert_ptr_nonnull(doc);
    ck_assert_str_eq(tw_conf_scalar(at(doc, "c")), "2");
    tw_conf_doc_free(doc);
}
END_TEST

/* ---- !include ---------------------------------------------------------- */

static char tmpdir[64];

static void write_file(const char *rel, const char *text)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/%s", tmpdir, rel);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
}

static void make_tmpdir(void)
{
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/tw_test_config_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
    char sub[512];
    snprintf(sub, sizeof(sub), "%s/sub", tmpdir);
    ck_assert_int_eq(mkdir(sub, 0700), 0);
}

static void remove_tmpdir(void)
{
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    ck_assert_int_eq(system(cmd), 0);
}

static tw_conf_doc_t *load_tmp(const char *rel)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/%s", tmpdir, rel);
    return tw_conf_load(path, &err);
}

START_TEST(test_include)
{
    make_tmpdir();
    setenv("TW_T_SUB", "sub", 1);
    write_file("main.yaml", "workers: 2\n"
                            "servers:\n"
                            "  - routes: !include ${TW_T_SUB}/routes.yaml\n"
                            "    x: !include sub/scalar.yaml\n");
    write_file("sub/routes.yaml", "# routes\n"
                                  "- path: /a\n"
                                  "  static: !include static.yaml\n");
    write_file("sub/static.yaml", "root: /srv\n");
    write_file("sub/scalar.yaml", "just text\n");
    tw_conf_doc_t *doc = load_tmp("main.yaml");
    ck_assert_msg(doc != NULL, "%s", err.message);
    char want[600];

    const tw_conf_node_t *routes = at(doc, "servers[0].routes");
    ck_assert_int_eq(tw_conf_type(routes), TW_CONF_LIST);
    snprintf(want, sizeof(want), "%s/sub/routes.yaml", tmpdir);
    ck_assert_str_eq(tw_conf_file(routes), want);
    ck_assert_str_eq(tw_conf_path(routes), "servers[0].routes");
    ck_assert_uint_eq(tw_conf_line(routes), 2);

    const tw_conf_node_t *root = at(doc, "servers[0].routes[0].static.root");
    ck_assert_str_eq(tw_conf_scalar(root), "/srv");
    ck_assert_str_eq(tw_conf_path(root), "servers[0].routes[0].static.root");
    snprintf(want, sizeof(want), "%s/sub/static.yaml", tmpdir);
    ck_assert_str_eq(tw_conf_file(root), want);
    ck_assert_uint_eq(tw_conf_line(root), 1);
    ck_assert_uint_eq(tw_conf_column(root), 7);
    ck_assert_str_eq(tw_conf_scalar(at(doc, "servers[0].x")), "just text");
    snprintf(want, sizeof(want), "%s/main.yaml", tmpdir);
    ck_assert_str_eq(tw_conf_file(at(doc, "workers")), want);
    tw_conf_doc_free(doc);

    /* An error inside an included file names that file and the path the
     * node has in the whole config. */
    write_file("sub/static.yaml", "root: /srv\nroot: /again\n");
    doc = load_tmp("main.yaml");
    ck_assert_ptr_null(doc);
    snprintf(want, sizeof(want),
             "%s/sub/static.yaml:2:1: servers[0].routes[0].static.root: duplicate key 'root' "
             "(first at line 1)",
             tmpdir);
    ck_assert_str_eq(err.message, want);

    /* A missing file is an error at the !include. */
    write_file("sub/static.yaml", "root: /srv\n");
    write_file("sub/routes.yaml", "- path: /a\n  static: !include nope.yaml\n");
    doc = load_tmp("main.yaml");
    ck_assert_ptr_null(doc);
    snprintf(want, sizeof(want),
             "%s/sub/routes.yaml:2:11: servers[0].routes[0].static: cannot include "
             "%s/sub/nope.yaml: No such file or directory",
             tmpdir, tmpdir);
    ck_assert_str_eq(err.message, want);

    write_file("sub/routes.yaml", "- path: /a\n  static: !include ''\n");
    doc = load_tmp("main.yaml");
    ck_assert_ptr_null(doc);
    ck_assert_ptr_nonnull(strstr(err.message, "routes.yaml:2:11: servers[0].routes[0].static: "
                                              "!include needs a file name"));
    unsetenv("TW_T_SUB");
    remove_tmpdir();
}
END_TEST

START_TEST(test_include_of_special_files)
{
    /* A FIFO would block a plain open(O_RDONLY) until a writer comes: -t,
     * a reload in the master and -s reload would hang. Refused at once,
     * at the !include's position; so are directories and devices. */
    make_tmpdir();
    char fifo[256];
    snprintf(fifo, sizeof(fifo), "%s/sub/fifo.yaml", tmpdir);
    ck_assert_int_eq(mkfifo(fifo, 0600), 0);
    write_file("main.yaml", "a: 1\nb:\n  c: !include sub/fifo.yaml\n");
    tw_conf_doc_t *doc = load_tmp("main.yaml");
    ck_assert_ptr_null(doc);
    char want[700];
    snprintf(want, sizeof(want),
             "%s/main.yaml:3:6: b.c: cannot include %s/sub/fifo.yaml: a FIFO, not a regular file",
             tmpdir, tmpdir);
    ck_assert_str_eq(err.message, want);

    write_file("main.yaml", "a: !include sub\n");
    doc = load_tmp("main.yaml");
    ck_assert_ptr_null(doc);
    snprintf(want, sizeof(want),
             "%s/main.yaml:1:4: a: cannot include %s/sub: a directory, not a regular file", tmpdir,
             tmpdir);
    ck_assert_str_eq(err.message, want);
    write_file("main.yaml", "b: !include /dev/zero\n");
    doc = load_tmp("main.yaml");
    ck_assert_ptr_null(doc);
    ck_assert_str_eq(strstr(err.message, ": b: "),
                     ": b: cannot include /dev/zero: a device, not a regular file");

    /* The config file itself. */
    doc = load_tmp("sub/fifo.yaml");
    ck_assert_ptr_null(doc);
    ck_assert_ptr_nonnull(
        strstr(err.message, "fifo.yaml: cannot read: a FIFO, not a regular file"));
    remove_tmpdir();
}
END_TEST

START_TEST(test_include_cycle)
{
    make_tmpdir();
    write_file("a.yaml", "x: !include sub/b.yaml\n");
    write_file("sub/b.yaml", "y: !include ../a.yaml\n");
    tw_conf_doc_t *doc = load_tmp("a.yaml");
    ck_assert_ptr_null(doc);
    char want[1024];
    snprintf(want, sizeof(want),
             "%s/sub/b.yaml:1:4: x.y: !include cycle: %s/a.yaml -> %s/sub/b.yaml -> "
             "%s/sub/../a.yaml",
             tmpdir, tmpdir, tmpdir, tmpdir);
    ck_assert_str_eq(err.message, want);

    write_file("self.yaml", "me: !include self.yaml\n");
    doc = load_tmp("self.yaml");
    ck_assert_ptr_null(doc);
    snprintf(want, sizeof(want),
             "%s/self.yaml:1:5: me: !include cycle: %s/self.yaml -> %s/self.yaml", tmpdir, tmpdir,
             tmpdir);
    ck_assert_str_eq(err.message, want);

    /* Including the same file twice, side by side, is no cycle. */
    write_file("twice.yaml", "a: !include sub/c.yaml\nb: !include sub/c.yaml\n");
    write_file("sub/c.yaml", "[1, 2]\n");
    doc = load_tmp("twice.yaml");
    ck_assert_msg(doc != NULL, "%s", err.message);
    ck_assert_str_eq(tw_conf_path(at(doc, "b[1]")), "b[1]");
    tw_conf_doc_free(doc);

    /* Depth: a chain of 20 distinct files. */
    for (int i = 0; i < 20; i++) {
        char name[32], text[64];
        snprintf(name, sizeof(name), "d%d.yaml", i);
        snprintf(text, sizeof(text), "n: !include d%d.yaml\n", i + 1);
        write_file(name, text);
    }
    write_file("d20.yaml", "end\n");
    doc = load_tmp("d0.yaml");
    ck_assert_ptr_null(doc);
    ck_assert_msg(strstr(err.message, "d16.yaml:1:4: ") != NULL, "%s", err.message);
    ck_assert_msg(strstr(err.message, "!include nested more than 16 files deep") != NULL, "%s",
                  err.message);
    doc = load_tmp("d4.yaml"); /* 17 files in all: fine */
    ck_assert_msg(doc != NULL, "%s", err.message);
    tw_conf_doc_free(doc);
    remove_tmpdir();
}
END_TEST

/* ---- sources: files and variables from memory --------------------------- */

typedef struct {
    const char *const *files; /* name, text, name, text, ..., NULL */
    const char *const *vars;  /* name, value, ..., NULL */
    int reads;                /* calls of read */
} mem_source_t;

static int mem_read(void *ctx, const char *path, char **text, size_t *len, const char **why)
{
    mem_source_t *m = ctx;
    m->reads++;
    for (const char *const *f = m->files; *f; f += 2)
        if (strcmp(f[0], path) == 0) {
            *len = strlen(f[1]);
            *text = strdup(f[1]);
            return *text ? 0 : -1;
        }
    *why = "not in the table";
    return -1;
}

static const char *mem_getenv(void *ctx, const char *name)
{
    mem_source_t *m = ctx;
    for (const char *const *v = m->vars; *v; v += 2)
        if (strcmp(v[0], name) == 0)
            return v[1];
    return NULL;
}

START_TEST(test_source)
{
    static const char *const files[] = {
        "conf/main.yaml",
        "a: !include part.yaml\nb: ${WHO}\nc: ${NOPE:-dflt}\n",
        "conf/part.yaml",
        "x: !include sub/leaf.yaml\n",
        "conf/sub/leaf.yaml",
        "[1, '${WHO}']\n",
        "conf/loop.yaml",
        "again: !include loop.yaml\n",
        NULL,
    };
    static const char *const vars[] = {"WHO", "memory", NULL};
    mem_source_t m = {files, vars, 0};
    tw_conf_source_t src = {.read = mem_read, .getenv = mem_getenv, .ctx = &m};
    /* The process environment is not consulted. */
    setenv("WHO", "environment", 1);
    memset(&err, 0, sizeof(err));
    tw_conf_doc_t *doc = tw_conf_load_source("conf/main.yaml", &src, &err);
    ck_assert_msg(doc != NULL, "%s", err.message);
    ck_assert_int_eq(m.reads, 3);
    ck_assert_str_eq(tw_conf_scalar(at(doc, "b")), "memory");
    ck_assert_str_eq(tw_conf_scalar(at(doc, "c")), "dflt");
    ck_assert_str_eq(tw_conf_scalar(at(doc, "a.x[1]")), "memory");
    ck_assert_str_eq(tw_conf_file(at(doc, "a.x[0]")), "conf/sub/leaf.yaml");
    tw_conf_doc_free(doc);
    unsetenv("WHO");

    /* Errors from the source keep their position and reason. */
    static const char *const missing[] = {"m.yaml", "k:\n  v: !include gone.yaml\n", NULL};
    m = (mem_source_t){missing, vars, 0};
    doc = tw_conf_load_source("m.yaml", &src, &err);
    ck_assert_ptr_null(doc);
    ck_assert_str_eq(err.message, "m.yaml:2:6: k.v: cannot include gone.yaml: not in the table");
    doc = tw_conf_load_source("nothing.yaml", &src, &err);
    ck_assert_ptr_null(doc);
    ck_assert_str_eq(err.message, "nothing.yaml: cannot read: not in the table");
    static const char *const unset[] = {"u.yaml", "k: ${WHO}\n", NULL};
    static const char *const no_vars[] = {NULL};
    m = (mem_source_t){unset, no_vars, 0};
    doc = tw_conf_load_source("u.yaml", &src, &err);
    ck_assert_ptr_null(doc);
    ck_assert_ptr_nonnull(strstr(err.message, "environment variable WHO is not set"));

    /* Without an identity function the path is the identity: a file that
     * includes itself by the same name is a cycle. */
    m = (mem_source_t){files, vars, 0};
    doc = tw_conf_load_source("conf/loop.yaml", &src, &err);
    ck_assert_ptr_null(doc);
    ck_assert_str_eq(err.message, "conf/loop.yaml:1:8: again: !include cycle: conf/loop.yaml -> "
                                  "conf/loop.yaml");

    /* From a string, with the source for what it includes. */
    m = (mem_source_t){files, vars, 0};
    const char *text = "p: !include part.yaml\n";
    doc = tw_conf_load_string_source("conf/inline.yaml", text, strlen(text), 0, &src, &err);
    ck_assert_msg(doc != NULL, "%s", err.message);
    ck_assert_str_eq(tw_conf_scalar(at(doc, "p.x[0]")), "1");
    tw_conf_doc_free(doc);
}
END_TEST

/* ---- dump -------------------------------------------------------------- */

static char *dump(const tw_conf_node_t *node)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(tw_conf_dump(node, f), 0);
    fclose(f);
    return buf;
}

START_TEST(test_dump)
{
    setenv("TW_T_PORT", "8080", 1);
    const char *y = "workers: auto\n"
                    "d: &d {a: 1}\n"
                    "servers:\n"
                    "  - listen: [\"${TW_T_PORT}\"]\n"
                    "    routes:\n"
                    "      - regex: '^/u/([0-9]+)$'\n"
                    "        m: {<<: *d, b: 'two words: yes'}\n"
                    "money: \"$${X} $$$$ 5$\"\n"
                    "'<<': literal\n"
                    "empty: ''\n"
                    "nl: \"a\\nb\"\n"
                    "num: '007'\n";
    tw_conf_doc_t *doc = load(y);
    ck_assert_msg(doc != NULL, "%s", err.message);
    char *out = dump(tw_conf_root(doc));
    ck_assert_ptr_nonnull(strstr(out, "workers: auto\n"));
    ck_assert_ptr_nonnull(strstr(out, "8080"));
    ck_assert_ptr_nonnull(strstr(out, "^/u/([0-9]+)$"));
    /* Loading the dump gives the same tree (dump is a fixed point). */
    tw_conf_doc_t *again = tw_conf_load_string("dump.yaml", out, strlen(out), &err);
    ck_assert_msg(again != NULL, "%s\n%s", err.message, out);
    char *out2 = dump(tw_conf_root(again));
    ck_assert_str_eq(out, out2);
    ck_assert_str_eq(tw_conf_scalar(at(again, "money")), "${X} $$ 5$");
    ck_assert_str_eq(tw_conf_scalar(tw_conf_map_get(tw_conf_root(again), "<<")), "literal");
    ck_assert_str_eq(tw_conf_scalar(at(again, "servers[0].routes[0].m.a")), "1");
    ck_assert_str_eq(tw_conf_scalar(at(again, "nl")), "a\nb");
    ck_assert_str_eq(tw_conf_scalar(at(again, "num")), "007");
    ck_assert_str_eq(tw_conf_scalar(at(again, "empty")), "");
    free(out);
    free(out2);
    tw_conf_doc_free(again);
    tw_conf_doc_free(doc);
    unsetenv("TW_T_PORT");
}
END_TEST

/* ---- arena ------------------------------------------------------------- */

START_TEST(test_arena)
{
    tw_conf_arena_t *a = tw_conf_arena_new();
    ck_assert_ptr_nonnull(a);
    for (int i = 0; i < 1000; i++) {
        size_t n = (size_t)(i * 37) % 9000;
        unsigned char *p = tw_conf_arena_alloc(a, n);
        ck_assert_ptr_nonnull(p);
        ck_assert_uint_eq((uintptr_t)p % _Alignof(max_align_t), 0);
        size_t nonzero = 0; /* zeroed (one check: each assertion is slow) */
        for (size_t j = 0; j < n; j++)
            nonzero += p[j] != 0;
        ck_assert_uint_eq(nonzero, 0);
        memset(p, 0xab, n);
    }
    ck_assert_str_eq(tw_conf_arena_strndup(a, "hello world", 5), "hello");
    ck_assert_str_eq(tw_conf_arena_printf(a, "%s-%d", "x", 42), "x-42");
    ck_assert_ptr_null(tw_conf_arena_alloc(a, SIZE_MAX));
    tw_conf_arena_free(a);
    tw_conf_arena_free(NULL);
}
END_TEST

static Suite *config_suite(void)
{
    Suite *s = suite_create("config");
    TCase *tc = tcase_create("load");
    tcase_add_loop_test(tc, test_load_errors, 0,
                        (int)(sizeof(load_errors) / sizeof(load_errors[0])));
    tcase_add_test(tc, test_depth_limit);
    tcase_add_test(tc, test_billion_laughs);
    tcase_add_test(tc, test_no_include_flag);
    tcase_add_test(tc, test_missing_file);
    tcase_add_test(tc, test_nodes);
    tcase_add_test(tc, test_big_map);
    tcase_add_test(tc, test_env);
    tcase_add_test(tc, test_env_value_limit);
    tcase_add_test(tc, test_aliases);
    tcase_add_test(tc, test_include);
    tcase_add_test(tc, test_include_of_special_files);
    tcase_add_test(tc, test_include_cycle);
    tcase_add_test(tc, test_source);
    tcase_add_test(tc, test_dump);
    tcase_add_test(tc, test_arena);
    suite_add_tcase(s, tc);

    tc = tcase_create("getters");
    tcase_add_loop_test(tc, test_get_int, 0, (int)(sizeof(int_cases) / sizeof(int_cases[0])));
    tcase_add_loop_test(tc, test_get_bool, 0, (int)(sizeof(bool_cases) / sizeof(bool_cases[0])));
    tcase_add_loop_test(tc, test_get_size, 0, (int)(sizeof(size_cases) / sizeof(size_cases[0])));
    tcase_add_loop_test(tc, test_get_duration, 0,
                        (int)(sizeof(duration_cases) / sizeof(duration_cases[0])));
    tcase_add_test(tc, test_get_string);
    tcase_add_test(tc, test_error_format);
    tcase_add_test(tc, test_check_keys);
    tcase_add_loop_test(tc, test_edit_distance, 0, (int)(sizeof(distances) / sizeof(distances[0])));
    tcase_add_test(tc, test_suggest);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(config_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

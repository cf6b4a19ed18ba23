/* oot_plugin_test.c — an outside plugin's own unit test, in plain C (no
 * check): built by out_of_tree.sh with nothing but
 *   cc oot_plugin_test.c $(pkg-config --cflags --libs twister-test)
 * against an installed tree, it loads the hello plugin that was built out
 * of tree too (its path is argv[1]) and asks it for a page.
 * Exit status 0 and "oot_plugin_test: OK" when every check holds. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <twister/testing.h>

static int failures;

static void check(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "oot_plugin_test: FAIL: %s\n", what);
        failures++;
    }
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: oot_plugin_test PLUGIN.so\n");
        return 2;
    }
    char yaml[4096], err[1024];
    snprintf(yaml, sizeof yaml,
             "modules: [\"%s\"]\n"
             "servers:\n"
             "  - listen: [\"8080\"]\n"
             "    routes:\n"
             "      - path: /\n"
             "        handler: hello\n"
             "        hello: { message: \"out of tree\" }\n",
             argv[1]);
    tw_test_server_t *s = tw_test_server_new(yaml, err, sizeof err);
    if (!s) {
        fprintf(stderr, "oot_plugin_test: FAIL: %s\n", err);
        return 1;
    }
    tw_test_response_t *r = tw_test_fetch(s, "GET", "/", NULL, NULL, 0);
    check(r != NULL, "a response");
    if (r) {
        check(tw_test_response_status(r) == 200, "status 200");
        check(strcmp(tw_test_response_body(r, NULL), "out of tree") == 0, "the configured body");
    }
    r = tw_test_fetch(s, "GET", "/missing", NULL, NULL, 0);
    check(r && tw_test_response_status(r) == 404, "404 elsewhere");
    tw_test_server_free(s);
    if (failures)
        return 1;
    printf("oot_plugin_test: OK\n");
    return 0;
}

/* test_log.c — core/log.c: line format, level filtering, escaping,
 * reopen after rotation. Logs go to temp files. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log_setup.h"

static char dir[64];
static char path[128];

static void setup(void)
{
    snprintf(dir, sizeof dir, "/tmp/twlogXXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/error.log", dir);
    ck_assert_int_eq(tw_log_open(path), 0);
    tw_log_set_level(TW_LOG_INFO);
    tw_log_set_role("worker", 3, 1);
}

static void teardown(void)
{
    tw_log_close();
    char rotated[160];
    snprintf(rotated, sizeof rotated, "%s.1", path);
    unlink(path);
    unlink(rotated);
    rmdir(dir);
}

/* Reads the file at p into a static buffer. */
static const char *slurp(const char *p)
{
    static char buf[1 << 18];
    FILE *f = fopen(p, "r");
    if (!f)
        return "";
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

START_TEST(test_line_format)
{
    tw_log_error("disk %s is %d%% full", "sda", 93);
    const char *text = slurp(path);
    regex_t re;
    char pattern[256];
    snprintf(pattern, sizeof pattern,
             "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z "
             "\\[error\\] %d worker/3#1: disk sda is 93%% full\n$",
             (int)getpid());
    ck_assert_int_eq(regcomp(&re, pattern, REG_EXTENDED | REG_NOSUB), 0);
    ck_assert_msg(regexec(&re, text, 0, NULL, 0) == 0, "line was: %s", text);
    regfree(&re);
}
END_TEST

START_TEST(test_roles)
{
    tw_log_set_role("master", 0, -1);
    tw_log_info("a");
    tw_log_set_role("worker", 7, -1);
    tw_log_info("b");
    const char *text = slurp(path);
    ck_assert_ptr_nonnull(strstr(text, " master: a\n"));
    ck_assert_ptr_nonnull(strstr(text, " worker/7: b\n"));
}
END_TEST

START_TEST(test_level_filtering)
{
    tw_log_set_level(TW_LOG_WARN);
    ck_assert(tw_log_enabled(TW_LOG_ERROR));
    ck_assert(tw_log_enabled(TW_LOG_WARN));
    ck_assert(!tw_log_enabled(TW_LOG_INFO));
    tw_log_error("e1");
    tw_log_warn("w1");
    tw_log_info("i1");
    tw_log_debug("d1");
    tw_log_set_level(TW_LOG_DEBUG);
    tw_log_debug("d2");
    const char *text = slurp(path);
    ck_assert_int_eq(count_lines(text), 3);
    ck_assert_ptr_nonnull(strstr(text, "[error] "));
    ck_assert_ptr_nonnull(strstr(text, "[warn] "));
    ck_assert_ptr_null(strstr(text, "i1"));
    ck_assert_ptr_null(strstr(text, "d1"));
    ck_assert_ptr_nonnull(strstr(text, "[debug] "));
}
END_TEST

START_TEST(test_parse_level)
{
    tw_log_level_t l;
    ck_assert_int_eq(tw_log_parse_level("error", &l), 0);
    ck_assert_int_eq(l, TW_LOG_ERROR);
    ck_assert_int_eq(tw_log_parse_level("WARN", &l), 0);
    ck_assert_int_eq(l, TW_LOG_WARN);
    ck_assert_int_eq(tw_log_parse_level("warning", &l), 0);
    ck_assert_int_eq(l, TW_LOG_WARN);
    ck_assert_int_eq(tw_log_parse_level("info", &l), 0);
    ck_assert_int_eq(l, TW_LOG_INFO);
    ck_assert_int_eq(tw_log_parse_level("debug", &l), 0);
    ck_assert_int_eq(l, TW_LOG_DEBUG);
    errno = 0;
    ck_assert_int_eq(tw_log_parse_level("verbose", &l), -1);
    ck_assert_int_eq(errno, EINVAL);
    ck_assert_int_eq(tw_log_parse_level(NULL, &l), -1);
}
END_TEST

START_TEST(test_control_chars_escaped)
{
    tw_log_warn("path /a\nFAKE [error] line\r\x01");
    const char *text = slurp(path);
    ck_assert_int_eq(count_lines(text), 1);
    ck_assert_ptr_nonnull(strstr(text, "path /a\\nFAKE [error] line\\r\\x01\n"));
}
END_TEST

START_TEST(test_long_message_truncated_to_one_line)
{
    size_t n = 20000;
    char *big = malloc(n + 1);
    memset(big, 'x', n);
    big[n] = '\0';
    tw_log_error("%s", big);
    free(big);
    const char *text = slurp(path);
    ck_assert_int_eq(count_lines(text), 1);
    ck_assert_ptr_nonnull(strstr(text, "(truncated)\n"));
}
END_TEST

START_TEST(test_errno_preserved)
{
    errno = ECONNRESET;
    tw_log_error("x");
    ck_assert_int_eq(errno, ECONNRESET);
}
END_TEST

START_TEST(test_reopen_after_rotation)
{
    tw_log_info("before");
    char rotated[160];
    snprintf(rotated, sizeof rotated, "%s.1", path);
    ck_assert_int_eq(rename(path, rotated), 0);
    tw_log_info("still old");
    ck_assert_int_eq(tw_log_reopen(), 0);
    tw_log_info("after");
    const char *old = slurp(rotated);
    ck_assert_ptr_nonnull(strstr(old, "before"));
    ck_assert_ptr_nonnull(strstr(old, "still old"));
    ck_assert_ptr_null(strstr(old, "after"));
    const char *cur = slurp(path);
    ck_assert_int_eq(count_lines(cur), 1);
    ck_assert_ptr_nonnull(strstr(cur, "after"));
}
END_TEST

START_TEST(test_open_failure_keeps_old)
{
    errno = 0;
    ck_assert_int_eq(tw_log_open("/nonexistent-dir/x/y.log"), -1);
    ck_assert_int_ne(errno, 0);
    tw_log_info("kept");
    ck_assert_ptr_nonnull(strstr(slurp(path), "kept"));
}
END_TEST

START_TEST(test_reopen_onto_a_fifo_does_not_block)
{
    /* A FIFO put at the log's path: a blocking open would wait for a
     * reader forever (the master at SIGUSR1). Refused, with or without a
     * reader; the old file is kept and says why. */
    char rotated[160];
    snprintf(rotated, sizeof rotated, "%s.1", path);
    ck_assert_int_eq(rename(path, rotated), 0);
    ck_assert_int_eq(mkfifo(path, 0600), 0);
    errno = 0;
    ck_assert_int_eq(tw_log_reopen(), -1);
    ck_assert_int_eq(errno, ENXIO); /* no reader */
    int reader = open(path, O_RDONLY | O_NONBLOCK);
    ck_assert_int_ge(reader, 0);
    errno = 0;
    ck_assert_int_eq(tw_log_reopen(), -1);
    ck_assert_int_eq(errno, EINVAL); /* a reader: opened, but not a file */
    close(reader);
    tw_log_info("still the old file");
    const char *old = slurp(rotated);
    ck_assert_ptr_nonnull(strstr(old, "cannot reopen the error log"));
    ck_assert_ptr_nonnull(strstr(old, "not a regular file or a character device"));
    ck_assert_ptr_nonnull(strstr(old, "still the old file"));
}
END_TEST

START_TEST(test_open_refuses_what_is_not_a_file)
{
    errno = 0;
    ck_assert_int_eq(tw_log_open(dir), -1); /* a directory */
    ck_assert_int_ne(errno, 0);
    tw_log_info("kept");
    ck_assert_ptr_nonnull(strstr(slurp(path), "kept"));
    ck_assert_int_eq(tw_log_open("/dev/null"), 0); /* a character device is fine */
    tw_log_info("into the void");
    ck_assert_ptr_null(strstr(slurp(path), "into the void"));
}
END_TEST

START_TEST(test_appends_from_two_processes)
{
    /* One write per line with O_APPEND: lines from two processes interleave
     * whole. */
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    for (int i = 0; i < 200; i++)
        tw_log_info("%s line %d %0100d", pid == 0 ? "child" : "parent", i, 0);
    if (pid == 0)
        _exit(0);
    int status;
    waitpid(pid, &status, 0);
    const char *text = slurp(path);
    ck_assert_int_eq(count_lines(text), 400);
    /* Every line is complete: starts with a timestamp, ends with the pad. */
    const char *p = text;
    int child_lines = 0;
    while (*p) {
        const char *nl = strchr(p, '\n');
        ck_assert_ptr_nonnull(nl);
        ck_assert(p[4] == '-' && p[10] == 'T');
        ck_assert(nl[-1] == '0');
        if (strstr(p, " child line ") && strstr(p, " child line ") < nl) {
            child_lines++;
            /* The child's pid was refreshed after fork. */
            char tag[32];
            snprintf(tag, sizeof tag, "] %d ", (int)pid);
            const char *t = strstr(p, tag);
            ck_assert(t && t < nl);
        }
        p = nl + 1;
    }
    ck_assert_int_eq(child_lines, 200);
}
END_TEST

static Suite *log_suite(void)
{
    Suite *s = suite_create("log");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_line_format);
    tcase_add_test(tc, test_roles);
    tcase_add_test(tc, test_level_filtering);
    tcase_add_test(tc, test_parse_level);
    tcase_add_test(tc, test_control_chars_escaped);
    tcase_add_test(tc, test_long_message_truncated_to_one_line);
    tcase_add_test(tc, test_errno_preserved);
    tcase_add_test(tc, test_reopen_after_rotation);
    tcase_add_test(tc, test_open_failure_keeps_old);
    tcase_add_test(tc, test_reopen_onto_a_fifo_does_not_block);
    tcase_add_test(tc, test_open_refuses_what_is_not_a_file);
    tcase_add_test(tc, test_appends_from_two_processes);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(log_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

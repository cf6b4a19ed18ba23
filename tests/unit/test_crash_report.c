/* Unit tests for core/crash_report.c: a child process installs the
 * reporter and really crashes; the parent reads the report from shared
 * memory and checks that the signal's default action still ended the
 * child. */
#include <check.h>
#include <link.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "crash_report.h"

/* The crash site: its address range is what frame #0 must fall into. */
__attribute__((noinline, no_sanitize("undefined"))) void crash_report_test_fault(void);
__attribute__((noinline, no_sanitize("undefined"))) void crash_report_test_fault(void)
{
    int *p = NULL;
    __asm__ volatile("" : "+r"(p));
    *p = 42;
}

static int first_object_base(struct dl_phdr_info *info, size_t size, void *arg)
{
    (void)size;
    *(uintptr_t *)arg = info->dlpi_addr;
    return 1; /* the executable comes first */
}

typedef enum {
    DO_SEGV,
    DO_ABORT
} how_t;

/* Forks a child that installs the reporter (naming the executable
 * exe_name when it is not NULL) and crashes; returns its wait status
 * and copies the report into out. */
static int crash_child(how_t how, const char *exe_name, char *out, size_t len)
{
    tw_crash_report_t *slot =
        mmap(NULL, sizeof *slot, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    ck_assert_ptr_ne(slot, MAP_FAILED);
    slot->text[0] = '\0';
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        if (tw_crash_report_install(slot) != 0)
            _exit(100);
        if (exe_name) {
            const void *anchor = (const void *)crash_report_test_fault;
            tw_crash_report_scan(&anchor, &exe_name, 1);
        }
        if (how == DO_SEGV)
            crash_report_test_fault();
        else
            abort();
        _exit(101);
    }
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    snprintf(out, len, "%s", slot->text);
    munmap(slot, sizeof *slot);
    return status;
}

START_TEST(segv_report_names_the_faulting_instruction)
{
    char text[TW_CRASH_REPORT_SIZE];
    int status = crash_child(DO_SEGV, NULL, text, sizeof text);
    ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV,
                  "the default action must end the child (status %#x)", status);
    ck_assert_msg(strstr(text, "backtrace (SIGSEGV, fault address 0x0)"), "%s", text);

    char exe[512];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    ck_assert_int_gt(n, 0);
    exe[n] = '\0';
    char want[600];
    snprintf(want, sizeof want, "  #0  %s+0x", exe);
    const char *frame0 = strstr(text, want);
    ck_assert_msg(frame0, "frame #0 is in %s:\n%s", exe, text);
    unsigned long offset = strtoul(frame0 + strlen(want), NULL, 16);

    uintptr_t base = 0;
    dl_iterate_phdr(first_object_base, &base);
    uintptr_t fn = (uintptr_t)crash_report_test_fault - base;
    ck_assert_msg(offset >= fn && offset < fn + 256,
                  "frame #0 at +%#lx is not inside crash_report_test_fault (+%#lx)", offset,
                  (unsigned long)fn);
    /* The caller is there too: the unwinder went through the signal frame. */
    ck_assert_msg(strstr(text, "  #1  "), "%s", text);
    ck_assert_msg(!strstr(text, "did not find the interrupted frame"), "%s", text);
}
END_TEST

START_TEST(abort_is_reported_and_still_aborts)
{
    char text[TW_CRASH_REPORT_SIZE];
    int status = crash_child(DO_ABORT, NULL, text, sizeof text);
    ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT, "status %#x", status);
    ck_assert_msg(strncmp(text, "backtrace (SIGABRT)", 19) == 0, "%s", text);
    ck_assert_msg(strstr(text, "libc.so"), "abort's frames are in libc:\n%s", text);
}
END_TEST

START_TEST(scan_renames_the_object_of_an_anchor)
{
    char text[TW_CRASH_REPORT_SIZE];
    int status = crash_child(DO_SEGV, "/srv/plugins/renamed.so", text, sizeof text);
    ck_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV);
    ck_assert_msg(strstr(text, "  #0  /srv/plugins/renamed.so+0x"), "%s", text);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("crash_report");
    TCase *tc = tcase_create("crash_report");
    tcase_add_test(tc, segv_report_names_the_faulting_instruction);
    tcase_add_test(tc, abort_is_reported_and_still_aborts);
    tcase_add_test(tc, scan_renames_the_object_of_an_anchor);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

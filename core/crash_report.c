/* crash_report.c — see crash_report.h.
 *
 * What the handler may do is the hard part: it runs in a process whose
 * heap, stdio and loader locks may be in any state. So everything it
 * needs is prepared before: the alternate signal stack (a stack overflow
 * must still be reported), the table of loaded objects with their
 * address ranges and names (dladdr and dl_iterate_phdr take the loader
 * lock), and unwinding itself (glibc's backtrace() loads libgcc_s on its
 * first call). In the handler there are then only backtrace() on a warm
 * unwinder, reads of the table, digit formatting by hand and stores into
 * the shared slot.
 *
 * The table and the slot are process-wide because a signal handler gets
 * no argument; the two tables are swapped with one store, so a crash in
 * the middle of a rescan reads the previous, complete one. */
#include "crash_report.h"

#include <errno.h>
#include <execinfo.h>
#include <link.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#define MAX_OBJECTS 96
#define MAX_FRAMES 48
#define OBJECT_NAME_MAX 200
#define ALT_STACK_SIZE (64 * 1024)

typedef struct {
    uintptr_t start, end; /* the object's mapped range */
    uintptr_t base;       /* load bias: file address = runtime address - base */
    char name[OBJECT_NAME_MAX];
} object_t;

typedef struct {
    object_t items[MAX_OBJECTS];
    size_t count;
} object_table_t;

static object_table_t tables[2];
static object_table_t *volatile current_table;
static tw_crash_report_t *report_slot;

static const int fatal_signals[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT};

/* ---- the object table (outside signal context) --------------------------- */

typedef struct {
    object_table_t *table;
} scan_t;

static int add_object(struct dl_phdr_info *info, size_t size, void *arg)
{
    scan_t *scan = arg;
    (void)size;
    object_table_t *t = scan->table;
    if (t->count == MAX_OBJECTS)
        return 1;
    uintptr_t lo = UINTPTR_MAX, hi = 0;
    for (size_t i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_LOAD)
            continue;
        uintptr_t a = info->dlpi_addr + ph->p_vaddr;
        if (a < lo)
            lo = a;
        if (a + ph->p_memsz > hi)
            hi = a + ph->p_memsz;
    }
    if (lo >= hi)
        return 0;
    object_t *o = &t->items[t->count++];
    o->start = lo;
    o->end = hi;
    o->base = info->dlpi_addr;
    const char *name = info->dlpi_name;
    if (!name || !*name) {
        /* The executable: its name is "" here. */
        ssize_t n = readlink("/proc/self/exe", o->name, sizeof o->name - 1);
        o->name[n > 0 ? n : 0] = '\0';
        if (n <= 0)
            strcpy(o->name, "(executable)");
    } else {
        size_t len = strlen(name);
        if (len >= sizeof o->name)
            name += len - (sizeof o->name - 1); /* keep the file name, lose the start */
        strcpy(o->name, name);
    }
    return 0;
}

static object_t *object_of(object_table_t *t, uintptr_t addr)
{
    for (size_t i = 0; t && i < t->count; i++)
        if (addr >= t->items[i].start && addr < t->items[i].end)
            return &t->items[i];
    return NULL;
}

void tw_crash_report_scan(const void *const *anchors, const char *const *names, size_t n)
{
    object_table_t *next = current_table == &tables[0] ? &tables[1] : &tables[0];
    next->count = 0;
    scan_t scan = {.table = next};
    dl_iterate_phdr(add_object, &scan);
    for (size_t i = 0; i < n; i++) {
        object_t *o = object_of(next, (uintptr_t)anchors[i]);
        if (o && names[i]) {
            size_t len = strlen(names[i]);
            const char *name = names[i];
            if (len >= sizeof o->name)
                name += len - (sizeof o->name - 1);
            strcpy(o->name, name);
        }
    }
    __atomic_store_n(&current_table, next, __ATOMIC_RELEASE);
}

/* ---- the handler (signal context: async-signal-safe calls only) ------------ */

typedef struct {
    char *p, *end;
} out_t;

static void put(out_t *o, const char *s)
{
    while (*s && o->p < o->end)
        *o->p++ = *s++;
}

static void put_hex(out_t *o, uintptr_t v)
{
    char digits[2 + 2 * sizeof v + 1];
    char *d = digits + sizeof digits - 1;
    *d = '\0';
    do {
        *--d = "0123456789abcdef"[v & 0xf];
        v >>= 4;
    } while (v);
    *--d = 'x';
    *--d = '0';
    put(o, d);
}

static void put_uint(out_t *o, unsigned v)
{
    char digits[16];
    char *d = digits + sizeof digits - 1;
    *d = '\0';
    do {
        *--d = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    put(o, d);
}

static uintptr_t fault_pc(const void *context)
{
    const ucontext_t *uc = context;
    if (!uc)
        return 0;
#if defined(__x86_64__)
    return (uintptr_t)uc->uc_mcontext.gregs[REG_RIP];
#elif defined(__aarch64__)
    return (uintptr_t)uc->uc_mcontext.pc;
#elif defined(__i386__)
    return (uintptr_t)uc->uc_mcontext.gregs[REG_EIP];
#else
    return 0;
#endif
}

/* "  #3  /usr/lib/twister/modules/crash.so+0x1139" */
static void put_frame(out_t *o, object_table_t *t, unsigned index, uintptr_t addr, bool call_site)
{
    uintptr_t lookup = call_site && addr ? addr - 1 : addr;
    object_t *obj = object_of(t, lookup);
    put(o, "  #");
    put_uint(o, index);
    put(o, index < 10 ? "  " : " ");
    if (obj) {
        put(o, obj->name);
        put(o, "+");
        put_hex(o, lookup - obj->base);
    } else {
        put(o, "?? ");
        put_hex(o, addr);
    }
    put(o, "\n");
}

static void on_fatal_signal(int signo, siginfo_t *info, void *context)
{
    int saved_errno = errno;
    tw_crash_report_t *slot = report_slot;
    if (slot && !slot->text[0]) {
        /* One report per process: a second fault inside this handler must
         * not loop, it just dies below. */
        slot->text[0] = '?';
        char buf[TW_CRASH_REPORT_SIZE];
        out_t o = {buf, buf + sizeof buf - 1};
        put(&o, "backtrace (SIG");
        const char *abbrev = sigabbrev_np(signo);
        put(&o, abbrev ? abbrev : "?");
        if (info && info->si_code > 0 && (signo == SIGSEGV || signo == SIGBUS)) {
            put(&o, ", fault address ");
            put_hex(&o, (uintptr_t)info->si_addr);
        }
        put(&o, "); resolve a frame with addr2line -f -e FILE OFFSET:\n");

        object_table_t *t = __atomic_load_n(&current_table, __ATOMIC_ACQUIRE);
        void *frames[MAX_FRAMES];
        int n = backtrace(frames, MAX_FRAMES);
        uintptr_t pc = fault_pc(context);
        /* The first frames are this handler and the kernel's signal
         * trampoline: start at the interrupted instruction, which the
         * unwinder reports exactly (not as a return address). */
        int first = -1;
        for (int i = 0; i < n && pc; i++)
            if ((uintptr_t)frames[i] == pc) {
                first = i;
                break;
            }
        unsigned index = 0;
        if (pc)
            put_frame(&o, t, index++, pc, false);
        if (first >= 0) {
            for (int i = first + 1; i < n; i++)
                put_frame(&o, t, index++, (uintptr_t)frames[i], true);
        } else {
            put(&o, "  (the unwinder did not find the interrupted frame; the frames below "
                    "include the signal handler)\n");
            for (int i = 0; i < n; i++)
                put_frame(&o, t, index++, (uintptr_t)frames[i], true);
        }
        /* The master may read the slot as soon as the process is gone:
         * write everything but the first byte, then the first byte. */
        size_t len = (size_t)(o.p - buf);
        for (size_t i = 1; i < len; i++)
            slot->text[i] = buf[i];
        slot->text[len] = '\0';
        __atomic_store_n(&slot->text[0], buf[0], __ATOMIC_RELEASE);
    }

    /* The default action, so that the exit status and a core dump are the
     * signal's own. A fault the kernel raised happens again as soon as the
     * handler returns; a signal sent with kill/raise/abort is sent again. */
    struct sigaction dfl = {.sa_handler = SIG_DFL};
    sigemptyset(&dfl.sa_mask);
    sigaction(signo, &dfl, NULL);
    if (!info || info->si_code <= 0 || signo == SIGABRT)
        raise(signo);
    errno = saved_errno;
}

int tw_crash_report_install(tw_crash_report_t *slot)
{
    /* Prime the unwinder (see the top of the file). */
    void *warm[4];
    backtrace(warm, 4);
    tw_crash_report_scan(NULL, NULL, 0);

    stack_t alt = {.ss_size = ALT_STACK_SIZE};
    alt.ss_sp =
        mmap(NULL, ALT_STACK_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (alt.ss_sp == MAP_FAILED)
        return -1;
    if (sigaltstack(&alt, NULL) != 0) {
        int e = errno;
        munmap(alt.ss_sp, ALT_STACK_SIZE);
        errno = e;
        return -1;
    }
    report_slot = slot;
    struct sigaction sa = {.sa_sigaction = on_fatal_signal, .sa_flags = SA_SIGINFO | SA_ONSTACK};
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < sizeof fatal_signals / sizeof fatal_signals[0]; i++)
        if (sigaction(fatal_signals[i], &sa, NULL) != 0)
            return -1;
    return 0;
}

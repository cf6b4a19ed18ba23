/* log.c — the error log: one line per event, one write(2) per line.
 *
 *   2026-11-27T10:00:00.123Z [error] 1234 worker/3#0: message
 *
 * One write per line makes lines from the master and every worker, all
 * appending to one O_APPEND file, interleave whole rather than torn.
 * Control characters in the message are escaped (\n, \r, \t, \xNN), so a
 * logged request path cannot forge a line. Logging never fails visibly:
 * a message too long is cut (and says so), a failed write is dropped.
 *
 * The state is process-wide by nature (one stderr, one log file per
 * process) and is set up before any plugin runs. */
#include "log_setup.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define LINE_MAX_BYTES 8192

static struct {
    int fd;               /* the log file, or -1 for stderr */
    char path[4096];      /* its path, for reopen */
    tw_log_level_t level; /* most verbose level written */
    char tag[64];         /* "master", "worker/3#0" */
    pid_t pid;            /* cached; refreshed in the child after fork */
} g_log = {.fd = -1, .level = TW_LOG_INFO, .tag = "twister"};

static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

static void refresh_pid(void)
{
    g_log.pid = getpid();
}

static void log_init_once(void)
{
    refresh_pid();
    pthread_atfork(NULL, NULL, refresh_pid);
}

static int out_fd(void)
{
    return g_log.fd >= 0 ? g_log.fd : STDERR_FILENO;
}

int tw_log_enabled(tw_log_level_t level)
{
    return (int)level <= (int)g_log.level;
}

void tw_log_set_level(tw_log_level_t level)
{
    if ((int)level < TW_LOG_ERROR)
        level = TW_LOG_ERROR;
    if ((int)level > TW_LOG_DEBUG)
        level = TW_LOG_DEBUG;
    g_log.level = level;
}

int tw_log_parse_level(const char *name, tw_log_level_t *out)
{
    if (name) {
        for (int i = 0; i <= TW_LOG_DEBUG; i++) {
            if (strcasecmp(name, level_names[i]) == 0) {
                *out = (tw_log_level_t)i;
                return 0;
            }
        }
        if (strcasecmp(name, "warning") == 0) {
            *out = TW_LOG_WARN;
            return 0;
        }
    }
    errno = EINVAL;
    return -1;
}

void tw_log_set_role(const char *role, unsigned generation, int worker_index)
{
    pthread_once(&g_once, log_init_once);
    refresh_pid();
    char *p = g_log.tag;
    size_t cap = sizeof g_log.tag;
    int n = snprintf(p, cap, "%s", role && role[0] ? role : "twister");
    if (n > 0 && (size_t)n < cap && generation != 0)
        n += snprintf(p + n, cap - (size_t)n, "/%u", generation);
    if (n > 0 && (size_t)n < cap && worker_index >= 0)
        snprintf(p + n, cap - (size_t)n, "#%d", worker_index);
}

/* O_NONBLOCK: opening a FIFO for writing blocks until a reader comes (a
 * FIFO put at the log's path would freeze the master at SIGUSR1); with it
 * the open fails (ENXIO) or fstat refuses the FIFO. A regular file ignores
 * the flag; a character device (/dev/null, a terminal) is kept, and its
 * writes can then never block either. EINVAL for anything else. */
static int open_file(const char *path)
{
    int fd;
    do
        fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOCTTY | O_NONBLOCK, 0644);
    while (fd < 0 && errno == EINTR);
    if (fd < 0)
        return -1;
    struct stat st;
    int e = fstat(fd, &st) != 0 ? errno : !S_ISREG(st.st_mode) && !S_ISCHR(st.st_mode) ? EINVAL : 0;
    if (e != 0) {
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

static bool is_stderr_name(const char *path)
{
    return !path || !path[0] || strcmp(path, "stderr") == 0;
}

int tw_log_open(const char *path)
{
    pthread_once(&g_once, log_init_once);
    if (is_stderr_name(path)) {
        tw_log_close();
        return 0;
    }
    if (strlen(path) >= sizeof g_log.path) {
        errno = ENAMETOOLONG;
        return -1;
    }
    int fd = open_file(path);
    if (fd < 0)
        return -1;
    if (g_log.fd >= 0)
        close(g_log.fd);
    g_log.fd = fd;
    memcpy(g_log.path, path, strlen(path) + 1);
    return 0;
}

int tw_log_reopen(void)
{
    if (g_log.fd < 0)
        return 0;
    int fd = open_file(g_log.path);
    if (fd < 0) {
        int e = errno;
        tw_log(TW_LOG_ERROR, "cannot reopen the error log %s: %s; still writing to the old file",
               g_log.path, e == EINVAL ? "not a regular file or a character device" : strerror(e));
        errno = e;
        return -1;
    }
    /* Keep the fd number: whoever holds it (a dup to stderr, say) follows. */
    if (dup3(fd, g_log.fd, O_CLOEXEC) < 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    close(fd);
    return 0;
}

void tw_log_close(void)
{
    if (g_log.fd >= 0)
        close(g_log.fd);
    g_log.fd = -1;
    g_log.path[0] = '\0';
}

/* "2026-11-27T10:00:00.123Z" (24 bytes). The part up to the seconds is
 * formatted once per second, per thread. */
static size_t format_time(char *out)
{
    static __thread time_t cached_sec = -1;
    static __thread char cached[32];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (ts.tv_sec != cached_sec) {
        struct tm tm;
        /* gmtime_r fails past year 2^31 and leaves tm unset; strftime's
         * buffer is undefined when it returns 0. */
        if (gmtime_r(&ts.tv_sec, &tm) == NULL ||
            strftime(cached, sizeof cached, "%Y-%m-%dT%H:%M:%S", &tm) == 0)
            memcpy(cached, "0000-00-00T00:00:00", 20);
        cached_sec = ts.tv_sec;
    }
    size_t n = strlen(cached);
    memcpy(out, cached, n);
    int ms = (int)(ts.tv_nsec / 1000000);
    out[n++] = '.';
    out[n++] = (char)('0' + ms / 100);
    out[n++] = (char)('0' + ms / 10 % 10);
    out[n++] = (char)('0' + ms % 10);
    out[n++] = 'Z';
    return n;
}

/* Copies src into dst (room bytes), escaping control characters. Returns
 * the bytes written; stops (and sets *cut) when the next one won't fit. */
static size_t escape_into(char *dst, size_t room, const char *src, size_t len, bool *cut)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)src[i];
        char esc[4];
        size_t k;
        if (c >= 0x20 && c != 0x7f) {
            esc[0] = (char)c;
            k = 1;
        } else if (c == '\n' || c == '\r' || c == '\t') {
            esc[0] = '\\';
            esc[1] = c == '\n' ? 'n' : c == '\r' ? 'r' : 't';
            k = 2;
        } else {
            esc[0] = '\\';
            esc[1] = 'x';
            esc[2] = hex[c >> 4];
            esc[3] = hex[c & 15];
            k = 4;
        }
        if (o + k > room) {
            *cut = true;
            break;
        }
        memcpy(dst + o, esc, k);
        o += k;
    }
    return o;
}

static void write_all(int fd, const char *p, size_t n)
{
    /* Bounded retries: a log write must never hang the loop for long. */
    for (int tries = 0; n > 0 && tries < 8; tries++) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return;
        }
        p += w;
        n -= (size_t)w;
    }
}

void tw_log(tw_log_level_t level, const char *fmt, ...)
{
    if (!tw_log_enabled(level))
        return;
    int saved_errno = errno; /* callers log strerror(errno) and go on using errno */
    pthread_once(&g_once, log_init_once);
    if ((int)level < TW_LOG_ERROR)
        level = TW_LOG_ERROR;

    char msg[LINE_MAX_BYTES];
    va_list ap;
    va_start(ap, fmt);
    int mlen = vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    bool cut = false;
    if (mlen < 0)
        mlen = 0;
    if ((size_t)mlen >= sizeof msg) {
        mlen = sizeof msg - 1;
        cut = true;
    }

    static const char cut_mark[] = "...(truncated)";
    char line[LINE_MAX_BYTES + 256];
    size_t n = format_time(line);
    int h = snprintf(line + n, sizeof line - n, " [%s] %d %s: ", level_names[level], (int)g_log.pid,
                     g_log.tag);
    if (h > 0)
        n += (size_t)h;
    size_t room = sizeof line - n - (sizeof cut_mark - 1) - 1; /* keep space for mark + \n */
    n += escape_into(line + n, room, msg, (size_t)mlen, &cut);
    if (cut) {
        memcpy(line + n, cut_mark, sizeof cut_mark - 1);
        n += sizeof cut_mark - 1;
    }
    line[n++] = '\n';
    write_all(out_fd(), line, n);
    errno = saved_errno;
}

/* test_module.c — core/module.c: snapshots, loading, the descriptor checks
 * (one fixture plugin per error message, tests/plugins/), the registry,
 * and the in-tree modules' descriptors.
 *
 * Fixtures are read from $TW_BUILD_DIR/tests/plugins and modules from
 * $TW_BUILD_DIR/modules (tests/meson.build sets TW_BUILD_DIR).
 *
 * `test_module --load FILE` snapshots and loads one plugin and prints its
 * name (tests/plugins/out_of_tree.sh uses it for a plugin built with only
 * cc and pkg-config). */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "module.h"
#include "twister/twister.h"

/* ---- helpers -------------------------------------------------------------- */

static char err[1024];

static const char *build_dir(void)
{
    const char *d = getenv("TW_BUILD_DIR");
    ck_assert_msg(d != NULL, "TW_BUILD_DIR is not set (run through meson test)");
    return d;
}

/* $TW_BUILD_DIR/tests/plugins/<name>.so in a static buffer (one at a time). */
static const char *fixture(const char *name)
{
    static char path[2][4096];
    static int which;
    which ^= 1;
    snprintf(path[which], sizeof path[which], "%s/tests/plugins/%s.so", build_dir(), name);
    return path[which];
}

static int snapshot_ok(const char *path)
{
    int fd = -1;
    err[0] = '\0';
    int rc = tw_module_snapshot(path, &fd, err, sizeof err);
    ck_assert_msg(rc == 0, "snapshot of %s failed: %s", path, err);
    ck_assert_int_ge(fd, 0);
    return fd;
}

/* Snapshots and loads path; returns the descriptor, *handle set. */
static const tw_module_t *load_ok(const char *path, void **handle)
{
    int fd = snapshot_ok(path);
    const tw_module_t *m = NULL;
    int rc = tw_module_load(fd, path, &m, handle, err, sizeof err);
    close(fd);
    ck_assert_msg(rc == 0, "loading %s failed: %s", path, err);
    ck_assert_ptr_nonnull(m);
    ck_assert_ptr_nonnull(*handle);
    return m;
}

/* The loader's error for path (which must fail to load). */
static const char *load_error(const char *path)
{
    int fd = snapshot_ok(path);
    const tw_module_t *m = (const tw_module_t *)&m;
    void *handle = &handle;
    int rc = tw_module_load(fd, path, &m, &handle, err, sizeof err);
    close(fd);
    ck_assert_msg(rc == -1, "%s loaded", path);
    ck_assert_ptr_null(m);
    ck_assert_ptr_null(handle);
    return err;
}

#define ck_assert_has(text, piece)                                                                 \
    ck_assert_msg(strstr((text), (piece)) != NULL, "'%s'\n  lacks '%s'", (text), (piece))

static char tmpdir[256];

static void make_tmpdir(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/test_module.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void remove_tmpdir(void)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    ck_assert_int_eq(system(cmd), 0);
}

static void write_file(const char *path, const void *data, size_t len)
{
    /* O_TRUNC on an existing file rewrites it in place (same inode), the
     * way `cp` over a loaded plugin does. */
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, data, len), (ssize_t)len);
    close(fd);
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "%s: %s", path, strerror(errno));
    char *buf = NULL;
    size_t cap = 0, n = 0, got;
    do {
        if (n == cap) {
            cap = cap ? cap * 2 : 65536;
            buf = realloc(buf, cap);
            ck_assert_ptr_nonnull(buf);
        }
        got = fread(buf + n, 1, cap - n, f);
        n += got;
    } while (got > 0);
    fclose(f);
    *len = n;
    return buf;
}

static void copy_file(const char *from, const char *to)
{
    size_t len;
    char *data = read_file(from, &len);
    write_file(to, data, len);
    free(data);
}

/* ---- snapshots -------------------------------------------------------------- */

START_TEST(test_snapshot_missing)
{
    int fd = 7;
    ck_assert_int_eq(tw_module_snapshot("/nonexistent/x.so", &fd, err, sizeof err), -1);
    ck_assert_int_eq(fd, -1);
    ck_assert_str_eq(err, "/nonexistent/x.so: cannot open: No such file or directory");
}
END_TEST

START_TEST(test_snapshot_directory)
{
    int fd;
    ck_assert_int_eq(tw_module_snapshot(build_dir(), &fd, err, sizeof err), -1);
    ck_assert_has(err, ": not a regular file: modules: lists plugin .so files");
}
END_TEST

START_TEST(test_snapshot_not_elf)
{
    make_tmpdir();
    char path[512];
    snprintf(path, sizeof path, "%s/site.yaml", tmpdir);
    write_file(path, "workers: 2\n", 11);
    int fd;
    ck_assert_int_eq(tw_module_snapshot(path, &fd, err, sizeof err), -1);
    char want[1024];
    snprintf(want, sizeof want,
             "%s: not a shared object (no ELF header): modules: lists plugin .so files", path);
    ck_assert_str_eq(err, want);

    write_file(path, "", 0); /* empty */
    ck_assert_int_eq(tw_module_snapshot(path, &fd, err, sizeof err), -1);
    ck_assert_str_eq(err, want);

    /* An ELF executable (ET_EXEC) is not a plugin either. */
    unsigned char ehdr[64] = {0x7f, 'E', 'L', 'F', 2, 1, 1};
    ehdr[16] = 2; /* e_type = ET_EXEC, little-endian */
    write_file(path, ehdr, sizeof ehdr);
    ck_assert_int_eq(tw_module_snapshot(path, &fd, err, sizeof err), -1);
    ck_assert_has(err, ": not a shared object (ELF type 2, expected 3 = ET_DYN): build it with "
                       "cc -shared -fPIC");
    remove_tmpdir();
}
END_TEST

/* The snapshot is an exact, sealed, close-on-exec copy. */
START_TEST(test_snapshot_sealed_copy)
{
    const char *path = fixture("good");
    int fd = snapshot_ok(path);
    size_t len;
    char *want = read_file(path, &len);
    struct stat st;
    ck_assert_int_eq(fstat(fd, &st), 0);
    ck_assert_int_eq((size_t)st.st_size, len);
    char *got = malloc(len);
    ck_assert_int_eq(pread(fd, got, len, 0), (ssize_t)len);
    ck_assert_int_eq(memcmp(got, want, len), 0);

    ck_assert_int_ne(fcntl(fd, F_GETFD) & FD_CLOEXEC, 0);
    int seals = fcntl(fd, F_GET_SEALS);
    ck_assert_int_eq(seals & (F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW),
                     F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW);
    ck_assert_int_eq(pwrite(fd, "x", 1, 0), -1);
    ck_assert_int_eq(errno, EPERM);
    ck_assert_int_eq(ftruncate(fd, 0), -1);
    free(got);
    free(want);
    close(fd);
}
END_TEST

/* ---- loading: one fixture per error ------------------------------------------ */

typedef struct {
    const char *fixture;
    const char *pieces[4]; /* each must appear in the message */
} load_case_t;

#define REBUILD(f)                                                                                 \
    "rebuild it against this server's headers: cc -shared -fPIC $(pkg-config --cflags "            \
    "twister) -o " f ".so " f ".c"

static const load_case_t load_cases[] = {
    {"bad_magic",
     {"bad_magic.so: bad magic in twister_module_v1: expected 0x54574d31, found 0x12345678: "
      "start the descriptor with TW_MODULE_HEADER"}},
    {"abi_major",
     {"abi_major.so: built for ABI 2.0, this server speaks ABI 1.3 (the major must be "
      "equal): " REBUILD("abi_major")}},
    {"abi_v2",
     {"abi_v2.so: built for ABI 2 (it exports twister_module_v2), this server speaks ABI 1 (it "
      "looks for twister_module_v1): " REBUILD("abi_v2")}},
    {"abi_minor",
     {"abi_minor.so: built for ABI 1.4, newer than this server's ABI 1.3 (the plugin may use "
      "what this server lacks): upgrade the server, or " REBUILD("abi_minor")}},
    {"short_size",
     {"short_size.so: descriptor is 24 bytes, expected at least 80 (the ABI 1.3 tw_module_t, "
      "whose fields this server reads): start it with TW_MODULE_HEADER and " REBUILD(
          "short_size")}},
    {"no_symbol",
     {"no_symbol.so: does not export twister_module_v1: not a Twister module, or its descriptor "
      "is not declared `TW_MODULE_EXPORT const tw_module_t twister_module_v1 = { "
      "TW_MODULE_HEADER, ... }`"}},
    {"tiny_symbol",
     {"tiny_symbol.so: twister_module_v1 is 4 bytes, too small for a module descriptor"}},
    {"unresolved",
     {"unresolved.so: cannot load: /proc/self/fd/",
      /* dlerror() verbatim */
      ": undefined symbol: tw_no_such_function (/proc/self/fd/", " is the snapshot of ",
      REBUILD("unresolved")}},
    {"no_name",
     {"no_name.so: the descriptor has no name: set .name (it is also the module's config key)"}},
    {"bad_name",
     {"bad_name.so: module name 'my.module' is not valid: use up to 64 letters, digits, '_' and "
      "'-' (it is the module's config key)"}},
};

START_TEST(test_load_errors)
{
    const load_case_t *c = &load_cases[_i];
    const char *path = fixture(c->fixture);
    const char *msg = load_error(path);
    ck_assert_msg(strncmp(msg, path, strlen(path)) == 0, "'%s' does not start with the file", msg);
    for (size_t i = 0; i < 4 && c->pieces[i]; i++)
        ck_assert_has(msg, c->pieces[i]);
}
END_TEST

/* The lowest free fd number, to see that load + unload leaves no fd open. */
static int lowest_free_fd(void)
{
    int fd = dup(0);
    close(fd);
    return fd;
}

START_TEST(test_load_good)
{
    int fd0 = lowest_free_fd();
    void *h;
    const tw_module_t *m = load_ok(fixture("good"), &h);
    ck_assert_str_eq(m->name, "good");
    ck_assert_str_eq(m->version, "1.0.0");
    ck_assert_uint_eq(m->magic, TW_MODULE_MAGIC);
    ck_assert_uint_eq(m->size, sizeof(tw_module_t));
    ck_assert_ptr_null(m->content);
    ck_assert_int_gt(lowest_free_fd(), fd0); /* the loaded object's fd */
    tw_module_unload(h);
    tw_module_unload(NULL);
    ck_assert_int_eq(lowest_free_fd(), fd0);
}
END_TEST

/* A snapshot that is not a plugin at all reaches dlopen only if someone
 * skips tw_module_snapshot: dlerror() still comes through verbatim. */
START_TEST(test_load_dlopen_error)
{
    make_tmpdir();
    char path[512];
    snprintf(path, sizeof path, "%s/bogus.so", tmpdir);
    unsigned char junk[64] = {0x7f, 'E', 'L', 'F', 2, 1, 1};
    junk[16] = 3; /* ET_DYN, but nothing else */
    write_file(path, junk, sizeof junk);
    int fd = snapshot_ok(path);
    const tw_module_t *m;
    void *h;
    ck_assert_int_eq(tw_module_load(fd, path, &m, &h, err, sizeof err), -1);
    close(fd);
    ck_assert_has(err, "bogus.so: cannot load: /proc/self/fd/");
    ck_assert_has(err, " is the snapshot of ");
    remove_tmpdir();
}
END_TEST

/* ---- descriptor checks without a .so ----------------------------------------- */

typedef struct {
    tw_module_t m;
    const char *error; /* NULL: valid */
} check_case_t;

#define VALID .magic = TW_MODULE_MAGIC, .abi_major = 1, .abi_minor = 0, .size = sizeof(tw_module_t)

static const check_case_t check_cases[] = {
    {{VALID, .name = "ok"}, NULL},
    {{VALID, .name = "a-b_C9"}, NULL},
    {{VALID, .name = "x234567890123456789012345678901234567890123456789012345678901234"}, NULL},
    /* a bigger descriptor than this server reads is fine */
    {{.magic = TW_MODULE_MAGIC, .abi_major = 1, .abi_minor = 0, .size = 4096, .name = "big"}, NULL},
    {{.magic = 0, .abi_major = 1, .size = sizeof(tw_module_t), .name = "x"},
     "m.so: bad magic in twister_module_v1: expected 0x54574d31, found 0x00000000: start the "
     "descriptor with TW_MODULE_HEADER"},
    /* magic is checked before anything else: the rest may be garbage */
    {{.magic = 1, .abi_major = 77, .size = 0, .name = NULL}, "m.so: bad magic"},
    {{.magic = TW_MODULE_MAGIC, .abi_major = 0, .abi_minor = 9, .size = 0},
     "m.so: built for ABI 0.9, this server speaks ABI 1.3 (the major must be equal): " REBUILD(
         "m")},
    {{.magic = TW_MODULE_MAGIC, .abi_major = 1, .abi_minor = 4, .size = 0},
     "m.so: built for ABI 1.4, newer than this server's ABI 1.3"},
    {{.magic = TW_MODULE_MAGIC, .abi_major = 1, .abi_minor = 0, .size = sizeof(tw_module_t) - 1},
     "m.so: descriptor is 79 bytes, expected at least 80"},
    {{VALID, .name = NULL}, "m.so: the descriptor has no name"},
    {{VALID, .name = ""}, "m.so: the descriptor has no name"},
    {{VALID, .name = "has space"}, "m.so: module name 'has space' is not valid"},
    {{VALID, .name = "a/b"}, "m.so: module name 'a/b' is not valid"},
    {{VALID, .name = "x2345678901234567890123456789012345678901234567890123456789012345"},
     "m.so: module name 'x234567890123456789012345678901234567890123456789012345678901234' is "
     "not valid"},
};

START_TEST(test_check)
{
    const check_case_t *c = &check_cases[_i];
    err[0] = '\0';
    int rc = tw_module_check(&c->m, "plugins/m.so", err, sizeof err);
    if (c->error == NULL) {
        ck_assert_msg(rc == 0, "case %d: %s", _i, err);
    } else {
        ck_assert_msg(rc == -1, "case %d passed", _i);
        ck_assert_msg(strncmp(err, "plugins/", 8) == 0, "case %d: %s", _i, err);
        ck_assert_has(err, c->error);
    }
}
END_TEST

/* ---- snapshots make rebuilt plugins reload -------------------------------------- */

/* Overwriting the file in place after a snapshot changes nothing for that
 * snapshot; a new snapshot sees the new file; both can be loaded at once
 * (an old generation draining beside a new one). */
START_TEST(test_overwrite_in_place)
{
    make_tmpdir();
    char path[512];
    snprintf(path, sizeof path, "%s/plugin.so", tmpdir);
    copy_file(fixture("good"), path);

    int old_fd = snapshot_ok(path);
    copy_file(fixture("other"), path); /* rebuilt in place: same inode */
    int new_fd = snapshot_ok(path);

    const tw_module_t *old_m, *new_m;
    void *old_h, *new_h;
    ck_assert_int_eq(tw_module_load(old_fd, path, &old_m, &old_h, err, sizeof err), 0);
    ck_assert_str_eq(old_m->name, "good");
    ck_assert_int_eq(tw_module_load(new_fd, path, &new_m, &new_h, err, sizeof err), 0);
    ck_assert_str_eq(new_m->name, "other");
    ck_assert_str_eq(old_m->name, "good"); /* still mapped, untouched */
    ck_assert_ptr_ne(old_m, new_m);

    /* Rewrite the file once more, even truncate it: loaded code is safe. */
    write_file(path, "", 0);
    ck_assert_str_eq(old_m->name, "good");
    ck_assert_str_eq(new_m->version, "2.0.0");

    tw_module_unload(old_h);
    tw_module_unload(new_h);
    close(old_fd);
    close(new_fd);
    remove_tmpdir();
}
END_TEST

/* glibc finds a loaded object by name first: if a snapshot's fd number
 * were reused for another snapshot, dlopen("/proc/self/fd/N") would hand
 * back the old object. The loader must still load the new one. */
START_TEST(test_fd_number_reuse)
{
    int fd1 = snapshot_ok(fixture("good"));
    const tw_module_t *m1, *m2;
    void *h1, *h2;
    ck_assert_int_eq(tw_module_load(fd1, "good.so", &m1, &h1, err, sizeof err), 0);
    close(fd1);
    int fd2 = snapshot_ok(fixture("other"));
    ck_assert_int_eq(dup2(fd2, fd1), fd1); /* the same number as the first snapshot */
    close(fd2);
    fd2 = fd1;
    ck_assert_int_eq(tw_module_load(fd2, "other.so", &m2, &h2, err, sizeof err), 0);
    ck_assert_str_eq(m2->name, "other");
    ck_assert_str_eq(m1->name, "good");
    tw_module_unload(h1);
    tw_module_unload(h2);

    /* And after unloading, numbers keep working. */
    ck_assert_int_eq(tw_module_load(fd2, "other.so", &m2, &h2, err, sizeof err), 0);
    ck_assert_str_eq(m2->name, "other");
    tw_module_unload(h2);
    close(fd2);
}
END_TEST

/* The same snapshot loaded twice is one object (the dynamic linker counts
 * references); unloading one reference leaves the other working, even
 * once the fd numbers involved are reused. */
START_TEST(test_same_snapshot_twice)
{
    int fd = snapshot_ok(fixture("good"));
    const tw_module_t *a, *b, *c;
    void *ha, *hb, *hc;
    ck_assert_int_eq(tw_module_load(fd, "good.so", &a, &ha, err, sizeof err), 0);
    ck_assert_int_eq(tw_module_load(fd, "good.so", &b, &hb, err, sizeof err), 0);
    ck_assert_ptr_eq(a, b);
    tw_module_unload(hb);
    ck_assert_str_eq(a->name, "good");
    /* glibc now also knows the object by the name hb was loaded under; the
     * next free fd numbers must not be that one (with fd still open, the
     * lowest free number would be hb's if the loader had closed it). */
    for (int i = 0; i < 4; i++) {
        int other = snapshot_ok(fixture("other"));
        ck_assert_int_eq(tw_module_load(other, "other.so", &c, &hc, err, sizeof err), 0);
        ck_assert_str_eq(c->name, "other");
        tw_module_unload(hc);
        close(other);
    }
    ck_assert_str_eq(a->name, "good");
    tw_module_unload(ha);
    close(fd);
}
END_TEST

/* ---- the registry ------------------------------------------------------------------ */

START_TEST(test_registry)
{
    tw_modules_t mods;
    tw_modules_init(&mods);
    const char *names[] = {"good", "other", "dup_a"};
    for (int i = 0; i < 3; i++) {
        int fd = snapshot_ok(fixture(names[i]));
        ck_assert_msg(tw_modules_load(&mods, fd, fixture(names[i]), names[i], err, sizeof err) == 0,
                      "%s", err);
        close(fd);
    }
    ck_assert_uint_eq(mods.count, 3);
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(tw_modules_index(&mods, mods.items[i].module), i);
    tw_module_t stranger = {VALID, .name = "good"};
    ck_assert_int_eq(tw_modules_index(&mods, &stranger), -1);

    const tw_loaded_module_t *it = tw_modules_find(&mods, "other");
    ck_assert_ptr_eq(it, &mods.items[1]);
    ck_assert_str_eq(it->configured, "other");
    ck_assert_str_eq(it->path, fixture("other"));
    ck_assert_ptr_nonnull(it->handle);
    ck_assert_ptr_eq(tw_modules_find(&mods, "dup"), &mods.items[2]);
    ck_assert_ptr_null(tw_modules_find(&mods, "nope"));

    /* Built-in modules (no handle) share the registry and its checks. */
    static const tw_module_t builtin = {VALID, .name = "core"};
    ck_assert_int_eq(tw_modules_add(&mods, &builtin, NULL, "(built in)", NULL, err, sizeof err), 0);
    ck_assert_int_eq(tw_modules_index(&mods, &builtin), 3);
    ck_assert_ptr_null(mods.items[3].configured);

    tw_modules_unload(&mods);
    ck_assert_uint_eq(mods.count, 0);
    ck_assert_ptr_null(mods.items);
}
END_TEST

START_TEST(test_registry_duplicate_name)
{
    tw_modules_t mods = {0};
    char a[4096];
    snprintf(a, sizeof a, "%s", fixture("dup_a"));
    const char *b = fixture("dup_b");

    int fd = snapshot_ok(a);
    ck_assert_int_eq(tw_modules_load(&mods, fd, a, "dup_a", err, sizeof err), 0);
    close(fd);

    fd = snapshot_ok(b);
    ck_assert_int_eq(tw_modules_load(&mods, fd, b, "dup_b", err, sizeof err), -1);
    close(fd);
    char want[8192];
    snprintf(want, sizeof want,
             "%s: module name 'dup' is already used by %s: each module needs its own .name", b, a);
    ck_assert_str_eq(err, want);
    ck_assert_uint_eq(mods.count, 1);
    ck_assert_str_eq(mods.items[0].module->version, "a");

    /* tw_modules_add refuses too, and leaves the handle to the caller. */
    void *h;
    const tw_module_t *m = load_ok(b, &h);
    ck_assert_int_eq(tw_modules_add(&mods, m, h, b, NULL, err, sizeof err), -1);
    ck_assert_str_eq(err, want);
    ck_assert_str_eq(m->version, "b");
    tw_module_unload(h);
    tw_modules_unload(&mods);
}
END_TEST

/* ---- the in-tree modules ------------------------------------------------------------- */

/* Loading a real module resolves its tw_* imports against this executable
 * (RTLD_NOW). The core defines them; until every one exists, these weak
 * stand-ins keep the loader test independent of the engine's progress.
 * Loading runs no hook, so they are never called. */
#define STUB                                                                                       \
    {                                                                                              \
        fprintf(stderr, "test_module: stub %s called\n", __func__);                                \
        abort();                                                                                   \
    }
#define WEAK __attribute__((weak))
WEAK tw_conf_type_t tw_conf_type(const tw_conf_node_t *n) STUB WEAK const
    char *tw_conf_scalar(const tw_conf_node_t *n) STUB WEAK size_t
    tw_conf_count(const tw_conf_node_t *n) STUB WEAK const tw_conf_node_t *tw_conf_list_item(
        const tw_conf_node_t *n,
        size_t i) STUB WEAK const tw_conf_node_t *tw_conf_map_get(const tw_conf_node_t *n,
                                                                  const char *k) STUB WEAK const
    char *tw_conf_map_key(const tw_conf_node_t *n, size_t i) STUB WEAK const
    tw_conf_node_t *tw_conf_map_value(const tw_conf_node_t *n, size_t i) STUB WEAK
    int tw_conf_get_string(const tw_conf_node_t *n, const char **o, tw_conf_error_t *e) STUB WEAK
    int tw_conf_get_bool(const tw_conf_node_t *n, bool *o, tw_conf_error_t *e) STUB WEAK
    int tw_conf_get_duration_ms(const tw_conf_node_t *n, uint64_t *o, tw_conf_error_t *e) STUB WEAK
    int tw_conf_error(tw_conf_error_t *e, const tw_conf_node_t *n, const char *f, ...) STUB WEAK
    int tw_conf_check_keys(const tw_conf_node_t *n, const char *const *a,
                           tw_conf_error_t *e) STUB WEAK
    void *tw_configure_alloc(tw_configure_t *cf, size_t n) STUB WEAK
    void *tw_configure_global_conf(tw_configure_t *cf) STUB WEAK const
    char *tw_configure_dir(tw_configure_t *cf) STUB WEAK
    void *tw_worker_global_conf(const tw_worker_t *w, const tw_module_t *m) STUB WEAK
    unsigned tw_worker_index(const tw_worker_t *w) STUB WEAK
    void tw_log(tw_log_level_t level, const char *fmt, ...) STUB WEAK
    char *tw_pool_strndup(tw_pool_t *p, const char *s, size_t len) STUB WEAK const
    char *tw_http_status_text(int status) STUB WEAK tw_str_t
    tw_request_method(const tw_request_t *r) STUB WEAK
    bool tw_request_method_is(const tw_request_t *r, const char *name) STUB WEAK tw_str_t
    tw_request_target(const tw_request_t *r) STUB WEAK tw_str_t
    tw_request_path(const tw_request_t *r) STUB WEAK tw_str_t
    tw_request_query(const tw_request_t *r) STUB WEAK
    int tw_request_version(const tw_request_t *r) STUB WEAK tw_str_t
    tw_request_host(const tw_request_t *r) STUB WEAK const
    tw_header_t *tw_request_header(const tw_request_t *r, const char *name) STUB WEAK size_t
    tw_request_header_count(const tw_request_t *r) STUB WEAK const
    tw_header_t *tw_request_header_at(const tw_request_t *r, size_t i) STUB WEAK int64_t
    tw_request_content_length(const tw_request_t *r) STUB WEAK tw_pool_t *tw_request_pool(
        tw_request_t *r) STUB WEAK void *tw_request_alloc(tw_request_t *r, size_t n) STUB WEAK
    void *tw_request_route_conf(const tw_request_t *r, const tw_module_t *m) STUB WEAK
    void tw_request_resume(tw_request_t *r, int rc) STUB WEAK
    int tw_request_set_timer(tw_request_t *r, uint64_t ms, tw_request_cb fn, void *arg) STUB WEAK
    int tw_request_stream_body(tw_request_t *r, tw_body_chunk_cb cb, void *arg) STUB WEAK
    int tw_request_read_body(tw_request_t *r, tw_body_done_cb cb, void *arg) STUB WEAK const
    char *tw_request_body(const tw_request_t *r, size_t *len) STUB WEAK
    int tw_request_on_abort(tw_request_t *r, tw_request_cb fn, void *arg) STUB WEAK
    void tw_request_resume_body(tw_request_t *r) STUB WEAK
    int tw_response_set_status(tw_request_t *r, int status) STUB WEAK
    int tw_response_set_header(tw_request_t *r, const char *n, const char *v) STUB WEAK
    int tw_response_set_content_length(tw_request_t *r, uint64_t len) STUB WEAK
    int tw_response_send(tw_request_t *r, int s, const char *t, const void *b, size_t l) STUB WEAK
    int tw_response_write(tw_request_t *r, const void *data, size_t len) STUB WEAK
    int tw_response_sendfile(tw_request_t *r, int fd, off_t off, size_t len) STUB WEAK
    int tw_response_on_drain(tw_request_t *r, tw_request_cb fn, void *arg) STUB WEAK
    int tw_response_finish(tw_request_t *r) STUB

    static const struct {
    const char *name;
    bool configure, init_worker;
} real_modules[] = {
    {"hello", true, false},    {"echo", true, false}, {"static", true, true},
    {"redirect", true, false}, {"crash", true, true},
};

START_TEST(test_real_module)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/modules/%s.so", build_dir(), real_modules[_i].name);
    void *h;
    const tw_module_t *m = load_ok(path, &h);
    ck_assert_str_eq(m->name, real_modules[_i].name);
    ck_assert_ptr_nonnull(m->version);
    ck_assert_ptr_nonnull(m->description);
    ck_assert_ptr_nonnull(m->content);
    ck_assert_int_eq(m->configure != NULL, real_modules[_i].configure);
    ck_assert_int_eq(m->init_worker != NULL, real_modules[_i].init_worker);
    ck_assert_int_eq(m->exit_worker != NULL,
                     strcmp(m->name, "static") == 0 || strcmp(m->name, "crash") == 0);
    tw_module_unload(h);
}
END_TEST

/* ---- main ------------------------------------------------------------------------- */

static Suite *module_suite(void)
{
    Suite *s = suite_create("module");
    TCase *tc = tcase_create("snapshot");
    tcase_add_test(tc, test_snapshot_missing);
    tcase_add_test(tc, test_snapshot_directory);
    tcase_add_test(tc, test_snapshot_not_elf);
    tcase_add_test(tc, test_snapshot_sealed_copy);
    suite_add_tcase(s, tc);

    tc = tcase_create("load");
    tcase_add_loop_test(tc, test_load_errors, 0, (int)(sizeof load_cases / sizeof load_cases[0]));
    tcase_add_test(tc, test_load_good);
    tcase_add_test(tc, test_load_dlopen_error);
    tcase_add_loop_test(tc, test_check, 0, (int)(sizeof check_cases / sizeof check_cases[0]));
    tcase_add_test(tc, test_overwrite_in_place);
    tcase_add_test(tc, test_fd_number_reuse);
    tcase_add_test(tc, test_same_snapshot_twice);
    suite_add_tcase(s, tc);

    tc = tcase_create("registry");
    tcase_add_test(tc, test_registry);
    tcase_add_test(tc, test_registry_duplicate_name);
    suite_add_tcase(s, tc);

    tc = tcase_create("modules");
    tcase_add_loop_test(tc, test_real_module, 0,
                        (int)(sizeof real_modules / sizeof real_modules[0]));
    suite_add_tcase(s, tc);
    return s;
}

/* --load FILE: snapshot + load one plugin, print "NAME VERSION", exit 0;
 * or print the loader's error and exit 1. */
static int load_one(const char *path)
{
    int fd;
    const tw_module_t *m;
    void *h;
    if (tw_module_snapshot(path, &fd, err, sizeof err) != 0 ||
        tw_module_load(fd, path, &m, &h, err, sizeof err) != 0) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    printf("%s %s\n", m->name, m->version ? m->version : "-");
    tw_module_unload(h);
    close(fd);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--load") == 0)
        return load_one(argv[2]);
    SRunner *sr = srunner_create(module_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

/* module.c — the module loader (see module.h for the why).
 *
 * Snapshots: the master copies each plugin file into a sealed memfd. The
 * seals (no write, grow or shrink) make the snapshot immutable, so no one
 * can change the code under a running worker, not even by mistake.
 *
 * Loading: a worker dlopens "/proc/self/fd/N". glibc recognises an object
 * it already has loaded first by *name*, then by device and inode. The
 * inode of a memfd is unique while the memfd lives, but the name
 * /proc/self/fd/N is only as unique as the number N: if a loaded snapshot's
 * fd were closed and N reused for a new snapshot, dlopen would return the
 * old object. So each load dlopens the name of a private dup of the memfd,
 * and that fd stays open as long as the object stays loaded. */
#include "module.h"

#include <dlfcn.h>
#include <elf.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef MFD_NOEXEC_SEAL
#define MFD_NOEXEC_SEAL 0x0008U /* Linux 6.3; older headers lack it */
#endif

/* The prefix every ABI shares: magic, abi_major, abi_minor, size. The
 * loader reads these before it knows anything else about the descriptor. */
#define HEADER_SIZE (offsetof(tw_module_t, size) + sizeof(uint32_t))

/* How many bytes of descriptor this server reads, by the plugin's ABI
 * minor. A minor release may only append fields to tw_module_t, so a
 * plugin built for an older minor has a shorter descriptor, and the server
 * must treat the fields it lacks as absent, never read them. The check is
 * "at least" rather than "equal": a plugin's descriptor is the struct its
 * headers declared, and only what this server reads has to be there. */
static const size_t min_size_by_minor[] = {
    [0] = offsetof(tw_module_t, content) + sizeof(tw_handler_fn), /* 1.0 ends with .content */
    [1] = offsetof(tw_module_t, content) + sizeof(tw_handler_fn), /* 1.1 added functions only */
    [2] = offsetof(tw_module_t, content) + sizeof(tw_handler_fn), /* 1.2 added functions only */
    [3] = offsetof(tw_module_t, variables) + sizeof(const tw_variable_t *), /* 1.3: .variables */
};
_Static_assert(offsetof(tw_module_t, variables) + sizeof(const tw_variable_t *) ==
                   sizeof(tw_module_t),
               "tw_module_t grew: bump TW_ABI_MINOR and add its size to min_size_by_minor");
/* Sized by its entries, so a minor without one fails here instead of
 * reading as 0 (which would switch the size check off). */
_Static_assert(sizeof min_size_by_minor / sizeof min_size_by_minor[0] == TW_ABI_MINOR + 1,
               "min_size_by_minor needs an entry for every minor up to TW_ABI_MINOR");

#define MAX_NAME 64

/* The fix for most descriptor problems, with the plugin's file names. */
#define REBUILD_FMT                                                                                \
    "rebuild it against this server's headers: cc -shared -fPIC $(pkg-config --cflags "            \
    "twister) -o %s.so %s.c"

__attribute__((format(printf, 3, 4))) static int fail(char *err, size_t errlen, const char *fmt,
                                                      ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* "plugins/my_mod.so" -> "my_mod", for the rebuild hint. */
static void plugin_base(const char *path, char *out, size_t outlen)
{
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    size_t len = strlen(base);
    if (len > 3 && strcmp(base + len - 3, ".so") == 0)
        len -= 3;
    if (len == 0) {
        base = "plugin";
        len = strlen(base);
    }
    snprintf(out, outlen, "%.*s", (int)len, base);
}

/* ---- snapshots ---------------------------------------------------------- */

/* Refuses what dlopen would refuse with a less helpful message, using the
 * first bytes of the file only. */
static int check_elf(const char *path, const unsigned char *head, size_t n, char *err,
                     size_t errlen)
{
    if (n < SELFMAG || memcmp(head, ELFMAG, SELFMAG) != 0)
        return fail(err, errlen,
                    "%s: not a shared object (no ELF header): modules: lists plugin .so files",
                    path);
    /* e_type sits right after e_ident in both ELF classes; only trust it in
     * our own byte order (dlopen explains a foreign one well enough). */
    if (n >= EI_NIDENT + 2 &&
        head[EI_DATA] == (__BYTE_ORDER == __LITTLE_ENDIAN ? ELFDATA2LSB : ELFDATA2MSB)) {
        uint16_t type;
        memcpy(&type, head + EI_NIDENT, sizeof type);
        if (type != ET_DYN)
            return fail(err, errlen,
                        "%s: not a shared object (ELF type %u, expected %u = ET_DYN): build it "
                        "with cc -shared -fPIC",
                        path, type, ET_DYN);
    }
    return 0;
}

static int write_all(int fd, const unsigned char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

int tw_module_snapshot(const char *path, int *memfd_out, char *err, size_t errlen)
{
    *memfd_out = -1;
    /* O_NONBLOCK: a FIFO named by mistake must not hang the master. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0)
        return fail(err, errlen, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) < 0) {
        int e = errno;
        close(fd);
        return fail(err, errlen, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return fail(err, errlen, "%s: not a regular file: modules: lists plugin .so files", path);
    }

    /* The memfd's name shows in /proc/<pid>/maps of the workers
     * ("/memfd:twister:hello.so (deleted)"), which says which plugin a
     * crash address belongs to. */
    const char *slash = strrchr(path, '/');
    char name[250];
    snprintf(name, sizeof name, "twister:%s", slash ? slash + 1 : path);
    /* The snapshot needs no exec permission bits (dlopen maps it, it never
     * execve's it); ask for that explicitly where the kernel knows the flag,
     * as vm.memfd_noexec=2 refuses memfds that could be executed. */
    int memfd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_NOEXEC_SEAL);
    if (memfd < 0 && errno == EINVAL)
        memfd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (memfd < 0) {
        int e = errno;
        close(fd);
        return fail(err, errlen, "%s: cannot snapshot: memfd_create: %s", path, strerror(e));
    }

    unsigned char buf[65536];
    size_t total = 0;
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int e = errno;
            close(fd);
            close(memfd);
            return fail(err, errlen, "%s: read failed: %s", path, strerror(e));
        }
        if (n == 0)
            break;
        if (total == 0 && check_elf(path, buf, (size_t)n, err, errlen) < 0) {
            close(fd);
            close(memfd);
            return -1;
        }
        if (write_all(memfd, buf, (size_t)n) < 0) {
            int e = errno;
            close(fd);
            close(memfd);
            return fail(err, errlen, "%s: cannot snapshot: %s", path, strerror(e));
        }
        total += (size_t)n;
    }
    close(fd);
    if (total == 0) {
        close(memfd);
        return check_elf(path, buf, 0, err, errlen);
    }
    /* Best effort: a kernel without sealing still gets a private copy. */
    (void)fcntl(memfd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL);
    *memfd_out = memfd;
    return 0;
}

/* ---- descriptor checks -------------------------------------------------- */

int tw_module_check(const tw_module_t *m, const char *path, char *err, size_t errlen)
{
    char base[128];
    plugin_base(path, base, sizeof base);

    if (m->magic != TW_MODULE_MAGIC)
        return fail(err, errlen,
                    "%s: bad magic in " TW_MODULE_SYMBOL ": expected 0x%08x, found 0x%08x: "
                    "start the descriptor with TW_MODULE_HEADER",
                    path, TW_MODULE_MAGIC, m->magic);
    if (m->abi_major != TW_ABI_MAJOR)
        return fail(err, errlen,
                    "%s: built for ABI %u.%u, this server speaks ABI %d.%d (the major must be "
                    "equal): " REBUILD_FMT,
                    path, m->abi_major, m->abi_minor, TW_ABI_MAJOR, TW_ABI_MINOR, base, base);
    if (m->abi_minor > TW_ABI_MINOR)
        return fail(err, errlen,
                    "%s: built for ABI %u.%u, newer than this server's ABI %d.%d (the plugin "
                    "may use what this server lacks): upgrade the server, or " REBUILD_FMT,
                    path, m->abi_major, m->abi_minor, TW_ABI_MAJOR, TW_ABI_MINOR, base, base);
    size_t need = min_size_by_minor[m->abi_minor];
    if (m->size < need)
        return fail(err, errlen,
                    "%s: descriptor is %u bytes, expected at least %zu (the ABI %u.%u "
                    "tw_module_t, whose fields this server reads): start it with "
                    "TW_MODULE_HEADER and " REBUILD_FMT,
                    path, m->size, need, m->abi_major, m->abi_minor, base, base);
    if (m->name == NULL || m->name[0] == '\0')
        return fail(err, errlen,
                    "%s: the descriptor has no name: set .name (it is also the module's config "
                    "key)",
                    path);
    size_t len = strnlen(m->name, MAX_NAME + 1);
    bool ok = len <= MAX_NAME;
    for (size_t i = 0; ok && i < len; i++) {
        char c = m->name[i]; /* ASCII only, whatever the locale */
        ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
             c == '_' || c == '-';
    }
    if (!ok)
        return fail(err, errlen,
                    "%s: module name '%.*s' is not valid: use up to %d letters, digits, '_' and "
                    "'-' (it is the module's config key)",
                    path, (int)(len > MAX_NAME ? MAX_NAME : len), m->name, MAX_NAME);
    return 0;
}

const tw_variable_t *tw_module_variables(const tw_module_t *m)
{
    /* A descriptor built for ABI < 1.3 ends before the field. */
    if (m->size < offsetof(tw_module_t, variables) + sizeof m->variables)
        return NULL;
    return m->variables;
}

/* ---- loading ------------------------------------------------------------ */

/* The descriptor symbol is missing: tell a plugin built for another ABI
 * major (whose symbol name carries that major) from a file that is not a
 * Twister module at all. */
static int explain_missing_symbol(void *dl, const char *path, char *err, size_t errlen)
{
    static const int majors[] = {0, 2, 3, 4, 5, 6, 7, 8, 9};
    char base[128];
    plugin_base(path, base, sizeof base);
    for (size_t i = 0; i < sizeof majors / sizeof majors[0]; i++) {
        char sym[32];
        snprintf(sym, sizeof sym, "twister_module_v%d", majors[i]);
        if (majors[i] != TW_ABI_MAJOR && dlsym(dl, sym) != NULL)
            return fail(err, errlen,
                        "%s: built for ABI %d (it exports %s), this server speaks ABI %d (it "
                        "looks for " TW_MODULE_SYMBOL "): " REBUILD_FMT,
                        path, majors[i], sym, TW_ABI_MAJOR, base, base);
    }
    return fail(err, errlen,
                "%s: does not export " TW_MODULE_SYMBOL ": not a Twister module, or its "
                "descriptor is not declared `TW_MODULE_EXPORT const tw_module_t " TW_MODULE_SYMBOL
                " = { TW_MODULE_HEADER, ... }`",
                path);
}

/* The name a loaded object is known by: "/proc/self/fd/<n>", chosen by
 * tw_module_load when it first loaded that snapshot. */
static const char *loaded_name(void *dl)
{
    struct link_map *map = NULL;
    if (dlinfo(dl, RTLD_DI_LINKMAP, &map) != 0 || map == NULL)
        return NULL;
    return map->l_name;
}

int tw_module_load(int memfd, const char *display_path, const tw_module_t **out, void **handle,
                   char *err, size_t errlen)
{
    *out = NULL;
    *handle = NULL;
    /* Our own fd, named in the path given to dlopen, that lives as long as
     * the object: then that name can never come to mean another file. */
    int fd = fcntl(memfd, F_DUPFD_CLOEXEC, 0);
    if (fd < 0)
        return fail(err, errlen, "%s: cannot load the snapshot: %s", display_path, strerror(errno));
    char name[32];
    snprintf(name, sizeof name, "/proc/self/fd/%d", fd);

    (void)dlerror();
    void *dl = dlopen(name, RTLD_NOW | RTLD_LOCAL);
    if (dl == NULL) {
        const char *why = dlerror();
        char base[128];
        plugin_base(display_path, base, sizeof base);
        if (why == NULL)
            why = "unknown dlopen error";
        /* glibc says "...: undefined symbol: NAME". A tw_ name the server
         * lacks is usually a core internal: the server exports exactly the
         * public API, so say that rather than only "rebuild it". */
        const char *undefined = strstr(why, "undefined symbol: ");
        const char *symbol = undefined ? undefined + strlen("undefined symbol: ") : "";
        int symbol_len = (int)strcspn(symbol, " ,()");
        if (undefined && strncmp(symbol, "tw_", 3) == 0)
            fail(err, errlen,
                 "%s: cannot load: %s (%s is the snapshot of %s): the plugin calls %.*s, which is "
                 "not part of this server's plugin API (the functions declared in "
                 "<twister/*.h>); use only those, or if the plugin was built for another "
                 "version, " REBUILD_FMT,
                 display_path, why, name, display_path, symbol_len, symbol, base, base);
        else if (undefined)
            fail(err, errlen,
                 "%s: cannot load: %s (%s is the snapshot of %s): the plugin uses something "
                 "this server does not provide: " REBUILD_FMT,
                 display_path, why, name, display_path, base, base);
        else
            fail(err, errlen, "%s: cannot load: %s (%s is the snapshot of %s)", display_path, why,
                 name, display_path);
        close(fd);
        return -1;
    }
    /* fd stays open: tw_module_unload finds it again from the object's
     * name and closes it once the object is gone. The same snapshot loaded
     * twice is one object, named after its first load, and glibc records
     * our name as an alias of it: then fd stays open for good, so that the
     * alias can never come to mean another file. Either way the handle is
     * the dlopen handle itself, so a server that never unloads leaks
     * nothing. */

    const tw_module_t *m = dlsym(dl, TW_MODULE_SYMBOL);
    int rc = 0;
    if (m == NULL) {
        rc = explain_missing_symbol(dl, display_path, err, errlen);
    } else {
        /* Before reading even the header, make sure the symbol is that big
         * (an `int twister_module_v1;` would otherwise be read past). */
        Dl_info info;
        const ElfW(Sym) *sym = NULL;
        if (dladdr1(m, &info, (void **)&sym, RTLD_DL_SYMENT) && sym != NULL && sym->st_size != 0 &&
            sym->st_size < HEADER_SIZE)
            rc = fail(err, errlen,
                      "%s: " TW_MODULE_SYMBOL " is %zu bytes, too small for a module "
                      "descriptor: declare it `TW_MODULE_EXPORT const tw_module_t " TW_MODULE_SYMBOL
                      " = { TW_MODULE_HEADER, ... }`",
                      display_path, (size_t)sym->st_size);
        else
            rc = tw_module_check(m, display_path, err, errlen);
    }
    if (rc < 0) {
        tw_module_unload(dl);
        return -1;
    }
    *out = m;
    *handle = dl;
    return 0;
}

void tw_module_unload(void *handle)
{
    if (handle == NULL)
        return;
    const char *name = loaded_name(handle);
    int fd = -1;
    char copy[32] = "";
    if (name != NULL && sscanf(name, "/proc/self/fd/%d", &fd) == 1)
        snprintf(copy, sizeof copy, "%s", name);
    dlclose(handle);
    if (fd < 0)
        return;
    /* Still loaded (another handle of the same snapshot, or a plugin that
     * cannot be unloaded): glibc still answers to that name for it, so
     * keep the fd, whose number must not be reused for another file while
     * the name points at this object. */
    void *still = dlopen(copy, RTLD_NOW | RTLD_NOLOAD);
    if (still != NULL)
        dlclose(still);
    else
        close(fd);
}

/* ---- the registry ------------------------------------------------------- */

void tw_modules_init(tw_modules_t *mods)
{
    mods->items = NULL;
    mods->count = 0;
    mods->cap = 0;
}

int tw_modules_add(tw_modules_t *mods, const tw_module_t *module, void *handle, const char *path,
                   const char *configured, char *err, size_t errlen)
{
    const tw_loaded_module_t *other = tw_modules_find(mods, module->name);
    if (other != NULL)
        return fail(err, errlen,
                    "%s: module name '%s' is already used by %s: each module needs its own "
                    ".name",
                    path, module->name, other->path);
    if (mods->count == mods->cap) {
        size_t cap = mods->cap ? mods->cap * 2 : 8;
        tw_loaded_module_t *items = realloc(mods->items, cap * sizeof *items);
        if (items == NULL)
            return fail(err, errlen, "%s: out of memory", path);
        mods->items = items;
        mods->cap = cap;
    }
    tw_loaded_module_t *it = &mods->items[mods->count];
    it->module = module;
    it->handle = handle;
    it->path = strdup(path);
    it->configured = configured ? strdup(configured) : NULL;
    if (it->path == NULL || (configured && it->configured == NULL)) {
        free(it->path);
        free(it->configured);
        return fail(err, errlen, "%s: out of memory", path);
    }
    mods->count++;
    return 0;
}

int tw_modules_load(tw_modules_t *mods, int memfd, const char *path, const char *configured,
                    char *err, size_t errlen)
{
    const tw_module_t *m;
    void *handle;
    if (tw_module_load(memfd, path, &m, &handle, err, errlen) < 0)
        return -1;
    if (tw_modules_add(mods, m, handle, path, configured, err, errlen) < 0) {
        tw_module_unload(handle);
        return -1;
    }
    return 0;
}

int tw_modules_index(const tw_modules_t *mods, const tw_module_t *module)
{
    for (size_t i = 0; i < mods->count; i++)
        if (mods->items[i].module == module)
            return (int)i;
    return -1;
}

const tw_loaded_module_t *tw_modules_find(const tw_modules_t *mods, const char *name)
{
    for (size_t i = 0; i < mods->count; i++)
        if (strcmp(mods->items[i].module->name, name) == 0)
            return &mods->items[i];
    return NULL;
}

void tw_modules_unload(tw_modules_t *mods)
{
    for (size_t i = mods->count; i-- > 0;)
        tw_module_unload(mods->items[i].handle);
    tw_modules_forget(mods);
}

void tw_modules_forget(tw_modules_t *mods)
{
    for (size_t i = mods->count; i-- > 0;) {
        free(mods->items[i].path);
        free(mods->items[i].configured);
    }
    free(mods->items);
    tw_modules_init(mods);
}

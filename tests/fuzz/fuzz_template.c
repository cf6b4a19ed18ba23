/* fuzz_template.c — libFuzzer target for the variable templates
 * (request/variables.c): any text must parse into pieces or name an
 * unknown variable, and rendering must give exactly what an independent
 * reference writes here, in all three modes, whatever the values hold.
 *
 * Input: the template text up to the first '\n' (a NUL in it ends it),
 * then for each variable piece one length byte (0xff: the value is
 * missing) and that many value bytes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "request/request.h"
#include "twister/module.h"
#include "twister/pool.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static tw_str_t never_called(tw_request_t *r)
{
    (void)r;
    __builtin_trap();
}

/* A module with variables of its own, to resolve names against. */
static const tw_variable_t fuzz_variables[] = {
    {"fuzz_plain", never_called, 0},
    {"fuzz_decoded", never_called, TW_VARIABLE_DECODED},
    {NULL, NULL, 0},
};
static const tw_module_t fuzz_module = {
    TW_MODULE_HEADER,
    .name = "fuzz",
    .variables = fuzz_variables,
};

static bool url_keeps(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != '\0' && strchr("-._~!$&'()*+,;=:@/", c) != NULL);
}

/* The reference: what piece value v must become in mode. */
static size_t reference(char *out, tw_str_t v, bool variable, unsigned flags,
                        tw_template_mode_t mode)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = 0;
    if (variable && mode == TW_TEMPLATE_LOG && !v.ptr) {
        out[n++] = '-';
        return n;
    }
    for (size_t i = 0; i < v.len; i++) {
        unsigned char c = (unsigned char)v.ptr[i];
        bool url = variable && mode == TW_TEMPLATE_URL && (flags & TW_VARIABLE_DECODED);
        bool log = variable && mode == TW_TEMPLATE_LOG;
        if (url && !url_keeps(c)) {
            out[n++] = '%';
            out[n++] = hex[c >> 4];
            out[n++] = hex[c & 15];
        } else if (log && (c == '"' || c == '\\' || c < 0x20 || c >= 0x7f)) {
            out[n++] = '\\';
            out[n++] = 'x';
            out[n++] = hex[c >> 4];
            out[n++] = hex[c & 15];
        } else {
            out[n++] = (char)c;
        }
    }
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nl = memchr(data, '\n', size);
    size_t tlen = nl ? (size_t)(nl - data) : size;
    char *text = malloc(tlen + 1);
    memcpy(text, data, tlen);
    text[tlen] = '\0'; /* a NUL inside ends the text, as in a C string */
    const uint8_t *rest = nl ? nl + 1 : data + size, *end = data + size;

    tw_pool_t *pool = tw_pool_new(1024);
    const tw_module_t *mods[] = {&fuzz_module};
    tw_str_t unknown;
    tw_template_t *t = tw_template_parse(pool, text, mods, NULL, 1, &unknown);
    if (!t) {
        /* an unknown name is a name that sits in the text after a '$' */
        if (!unknown.ptr || unknown.len == 0 || unknown.ptr[-1] != '$')
            __builtin_trap();
        goto done;
    }
    if (strcmp(tw_template_text(t), text) != 0)
        __builtin_trap();

    size_t count = tw_template_pieces(t);
    tw_str_t *values = calloc(count ? count : 1, sizeof *values);
    bool any_variable = false;
    for (size_t i = 0; i < count; i++) {
        bool variable;
        (void)tw_template_piece_flags(t, i, &variable);
        any_variable |= variable;
        if (!variable)
            continue;
        if (rest < end) {
            size_t len = *rest++;
            if (len == 0xff) {
                values[i] = (tw_str_t){NULL, 0};
                continue;
            }
            if (len > (size_t)(end - rest))
                len = (size_t)(end - rest);
            values[i] = (tw_str_t){(const char *)rest, len};
            rest += len;
        } else {
            values[i] = (tw_str_t){"", 0};
        }
    }
    if (tw_template_is_literal(t) == any_variable)
        __builtin_trap();

    for (int mode = TW_TEMPLATE_TEXT; mode <= TW_TEMPLATE_LOG; mode++) {
        tw_str_t *copy = calloc(count ? count : 1, sizeof *copy);
        memcpy(copy, values, count * sizeof *copy);
        size_t len;
        char *got = tw_template_render(t, (tw_template_mode_t)mode, copy, pool, &len);
        if (!got || got[len] != '\0')
            __builtin_trap();
        /* The literal pieces, joined, are the text: the reference sees
         * the pieces render() filled in. */
        char *want = malloc(4 * (tlen + size) + 8);
        size_t wlen = 0, literal = 0;
        for (size_t i = 0; i < count; i++) {
            bool variable;
            unsigned flags = tw_template_piece_flags(t, i, &variable);
            if (!variable)
                literal += copy[i].len;
            wlen += reference(want + wlen, copy[i], variable, flags, (tw_template_mode_t)mode);
        }
        if (len != wlen || memcmp(got, want, len) != 0 || literal > tlen)
            __builtin_trap();
        free(want);
        free(copy);
    }
    free(values);
done:
    tw_pool_free(pool);
    free(text);
    return 0;
}

/* var_dup — provides $host, which is the core's: refused at load. */
#include <twister/twister.h>

static tw_str_t my_host(tw_request_t *r)
{
    (void)r;
    return (tw_str_t){"mine", 4};
}

static const tw_variable_t var_dup_variables[] = {
    {"host", my_host, 0},
    {NULL, NULL, 0},
};

TW_MODULE_EXPORT const tw_module_t twister_module_v1 = {
    TW_MODULE_HEADER,
    .name = "var_dup",
    .version = "1.0.0",
    .variables = var_dup_variables,
};

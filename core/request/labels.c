/* labels.c — the config-given names of a request's route, for metrics and
 * logs (twister/http.h). Its own file so that the accessors that expose
 * config rather than request data stay apart from api.c. */
#include "request/request.h"

const char *tw_request_route_label(const tw_request_t *r)
{
    return r->route ? r->route->label : NULL;
}

const char *tw_request_server_label(const tw_request_t *r)
{
    return r->route ? r->route->server_label : NULL;
}

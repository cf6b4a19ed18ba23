/* proxy_transport.h — reads a PROXY protocol header off a socket and not a
 * byte more, so that TLS can start right after it on a listener with both
 * `tls` and `proxy_protocol`. Internal to the core. */
#ifndef TWISTER_PROXY_TRANSPORT_H
#define TWISTER_PROXY_TRANSPORT_H

#include "twister/stream.h"

/* Makes s read no further than the end of the PROXY header its peer sends
 * first; nothing to free. Replace it (tw_stream_set_transport, or TLS)
 * once the header is parsed. */
void tw_proxy_transport_attach(tw_stream_t *s);

#endif

/* twister/twister.h — everything a plugin needs, in one include. Build a
 * plugin out of tree with:
 *     cc -shared -fPIC $(pkg-config --cflags twister) -o my.so my.c */
#ifndef TWISTER_TWISTER_H
#define TWISTER_TWISTER_H

#define TW_VERSION "0.1.0"

#include "twister/conf.h"
#include "twister/http.h"
#include "twister/log.h"
#include "twister/loop.h"
#include "twister/metrics.h"
#include "twister/module.h"
#include "twister/pool.h"
#include "twister/stream.h"
#include "twister/upstream.h"
#include "twister/variables.h"
#include "twister/zone.h"

#endif

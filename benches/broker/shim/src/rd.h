/*
 * Minimal stand-in for librdkafka's internal "rd.h", written for Weir's
 * broker benchmark harness (benches/broker).  It provides only what the
 * rdkafka_performance example program uses from librdkafka's private
 * headers, so that the example can be compiled against the *public*
 * librdkafka API (rdkafka.h) and linked to any librdkafka >= 2.0 shared
 * library.
 *
 * The example includes this file both as "../src/rd.h" (first line, before
 * any system header) and as "rd.h"; the include guard makes that harmless.
 */
#ifndef WEIR_BENCH_RD_SHIM_H
#define WEIR_BENCH_RD_SHIM_H

/* The example defines _GNU_SOURCE itself right after including us; define
 * it identically (empty) here so system headers see it first and the
 * later definition is a benign identical redefinition. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

/* Monotonic timestamp in microseconds. */
typedef int64_t rd_ts_t;

static inline rd_ts_t rd_clock(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (rd_ts_t)ts.tv_sec * 1000000 + (rd_ts_t)(ts.tv_nsec / 1000);
}

#define rd_snprintf(...) snprintf(__VA_ARGS__)

#ifndef RD_MIN
#define RD_MIN(a, b) ((a) < (b) ? (a) : (b))
#endif
#ifndef RD_MAX
#define RD_MAX(a, b) ((a) > (b) ? (a) : (b))
#endif

#endif /* WEIR_BENCH_RD_SHIM_H */

/*
 * Stand-in for librdkafka's internal "rdtime.h" (see rd.h in this
 * directory): the clock helpers the benchmark program needs live in rd.h.
 */
#ifndef WEIR_BENCH_RDTIME_SHIM_H
#define WEIR_BENCH_RDTIME_SHIM_H
#include "rd.h"
#endif /* WEIR_BENCH_RDTIME_SHIM_H */

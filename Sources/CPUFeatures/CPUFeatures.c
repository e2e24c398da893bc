// __builtin_cpu_supports reads CPUID once and also checks that the OS saves the vector state (XCR0).
#include "CPUFeatures.h"
#include <stdio.h>
#include <stdlib.h>

#if defined(__x86_64__)
// On x86-64 everything but the micro-kernels is built for AVX2 + FMA (Package.swift), and the Swift
// runtime may run such code before main: check here, before any of it, and say why instead of
// dying on an illegal instruction. This file is compiled with no instruction-set flags.
__attribute__((constructor)) static void aedist_require_avx2_fma(void) {
    if (!aedist_cpu_has_avx2_fma()) {
        fputs("aedist: error: this build of aedist needs a CPU with AVX2 and FMA "
              "(Intel Haswell, AMD Zen or later)\n", stderr);
        exit(1);
    }
}
#endif

int aedist_cpu_has_avx2_fma(void) {
#if defined(__x86_64__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    return 0;
#endif
}

int aedist_cpu_has_avx512(void) {
#if defined(__x86_64__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512cd") &&
           __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
           __builtin_cpu_supports("avx512vl");
#else
    return 0;
#endif
}

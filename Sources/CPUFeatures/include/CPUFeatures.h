// What the CPU (and the OS, for the AVX-512 register state) supports, asked at run time.
#ifndef AEDIST_CPU_FEATURES_H
#define AEDIST_CPU_FEATURES_H

/// 1 when AVX2 and FMA can be used.
int aedist_cpu_has_avx2_fma(void);
/// 1 when AVX-512 F, CD, BW, DQ and VL can be used (what `-target-cpu skylake-avx512` emits).
int aedist_cpu_has_avx512(void);

#endif

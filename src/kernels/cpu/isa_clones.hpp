#pragma once
// TH_ISA_CLONES: compile a function once per x86-64 ISA level (AVX-512 / AVX2 / baseline); the
// loader picks the clone for the CPU it runs on (glibc ifunc). The build stays portable and a
// loop gets the vector width of the machine. Only for loops whose result does not depend on the
// vector width (integer rules, or explicit lanes that fix the summation order).
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define TH_ISA_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define TH_ISA_CLONES
#endif

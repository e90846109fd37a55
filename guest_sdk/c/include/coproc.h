/* coproc.h - BOINC's processor-type names and GPU type constants (lib/coproc.h), for apps built
 * against the boinc-guest SDK. Usable from C and C++.
 *
 * GPU_TYPE_NVIDIA / GPU_TYPE_ATI / GPU_TYPE_INTEL are the strings BOINC puts in
 * APP_INIT_DATA::gpu_type ("NVIDIA", "ATI", "intel_gpu"); an app compares them with strcmp as with
 * BOINC. BOINC's GPU description classes (COPROC, COPROCS, COPROC_NVIDIA, ...) are not provided: a
 * VM guest has no GPU of the host's (docs/guest_sdk_c.md). */
#ifndef BOINC_GUEST_COPROC_H
#define BOINC_GUEST_COPROC_H

#include <string.h>

#include "error_numbers.h"
#include "miofile.h"
#include "parse.h"

#define MAX_COPROC_INSTANCES 64
#define MAX_RSC 8
#define GPU_MAX_PEAK_FLOPS 1.e15
#define GPU_DEFAULT_PEAK_FLOPS 100.e9

#define PROC_TYPE_CPU 0
#define PROC_TYPE_NVIDIA_GPU 1
#define PROC_TYPE_AMD_GPU 2
#define PROC_TYPE_INTEL_GPU 3
#define PROC_TYPE_MINER_ASIC 4
#define NPROC_TYPES 5

/* human-readable name ("NVIDIA GPU"); "unknown" outside 0 .. NPROC_TYPES - 1 */
static inline const char* proc_type_name(int t) {
    switch (t) {
    case PROC_TYPE_CPU: return "CPU";
    case PROC_TYPE_NVIDIA_GPU: return "NVIDIA GPU";
    case PROC_TYPE_AMD_GPU: return "AMD/ATI GPU";
    case PROC_TYPE_INTEL_GPU: return "Intel GPU";
    case PROC_TYPE_MINER_ASIC: return "Miner ASIC";
    }
    return "unknown";
}

/* the name BOINC uses in XML and in APP_INIT_DATA::gpu_type ("NVIDIA") */
static inline const char* proc_type_name_xml(int t) {
    switch (t) {
    case PROC_TYPE_CPU: return "CPU";
    case PROC_TYPE_NVIDIA_GPU: return "NVIDIA";
    case PROC_TYPE_AMD_GPU: return "ATI";
    case PROC_TYPE_INTEL_GPU: return "intel_gpu";
    case PROC_TYPE_MINER_ASIC: return "miner_asic";
    }
    return "unknown";
}

/* PROC_TYPE_* for a name of either form (and "CUDA", "AMD"); -1 if unknown */
static inline int coproc_type_name_to_num(const char* name) {
    if (!name) return -1;
    if (!strcmp(name, "CPU")) return PROC_TYPE_CPU;
    if (!strcmp(name, "NVIDIA") || !strcmp(name, "CUDA") || !strcmp(name, "NVIDIA GPU"))
        return PROC_TYPE_NVIDIA_GPU;
    if (!strcmp(name, "ATI") || !strcmp(name, "AMD") || !strcmp(name, "AMD/ATI GPU")) return PROC_TYPE_AMD_GPU;
    if (!strcmp(name, "intel_gpu") || !strcmp(name, "Intel GPU")) return PROC_TYPE_INTEL_GPU;
    if (!strcmp(name, "miner_asic") || !strcmp(name, "Miner ASIC")) return PROC_TYPE_MINER_ASIC;
    return -1;
}

#define GPU_TYPE_NVIDIA proc_type_name_xml(PROC_TYPE_NVIDIA_GPU)
#define GPU_TYPE_ATI proc_type_name_xml(PROC_TYPE_AMD_GPU)
#define GPU_TYPE_INTEL proc_type_name_xml(PROC_TYPE_INTEL_GPU)

#endif /* BOINC_GUEST_COPROC_H */

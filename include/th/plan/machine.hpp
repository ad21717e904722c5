#pragma once
// A machine to plan for: what one rank's device holds and computes, how ranks talk within and
// between nodes, and what a node's host memory and NVMe give. Read from a namelist file
// (&machine ... /, inputs/machines/*.nml; every key documented in docs/planning.md), or measured
// on the spot (calibrate_machine). Units: memory in GiB (2^30 bytes), rates in GB/s (1e9 bytes/s)
// and TFLOP/s (1e12), latencies in microseconds.
#include <cstdint>
#include <string>

#include "th/core/tensor.hpp"

namespace th {

class Comm;

enum class DeviceKind { Cpu, Gpu };

struct Machine {
  std::string name, source;  // what it is; where its figures come from (one line each)
  DeviceKind device = DeviceKind::Cpu;
  int devices_per_node = 1;       // GPUs, or cores of a CPU node (more ranks than that share them)
  double device_memory_gib = 0;   // per device (GPU); a CPU device is the host: 0
  double reserved_gib = 0;        // per device, never the run's (CUDA context, NCCL buffers)
  double peak_tflops_fp32 = 0, peak_tflops_bf16 = 0, peak_tflops_fp16 = 0;  // dense GEMM, per device
  double gemm_efficiency = 1;     // sustained fraction of peak on large GEMMs
  double gemm_call_us = 0;        // fixed cost of one GEMM call (launch, BLAS set-up)
  double gemm_half_dim = 0;       // h: a GEMM of smallest dimension d runs at d (1024 + h) / (1024 (d + h))
                                  // of the large rate (at most all of it)
  double memory_bandwidth_gbs = 0;  // device memory, per device (element-wise passes, optimizer)
  double exp_gelems = 0;          // element-wise passes that evaluate exp / erf / a hash (softmax,
                                  // cross-entropy, GELU, dropout): 1e9 elements per second per device
  double intra_latency_us = 0, intra_bandwidth_gbs = 0;  // per rank, one direction, within a node
  double inter_latency_us = 0, inter_bandwidth_gbs = 0;  // per rank, one direction, between nodes
  double overlap = 1;             // share of a collective that can run under compute (0..1)
  double host_memory_gib = 0;     // per node
  double host_bandwidth_gbs = 0;  // per node (the CPU optimizer of offload)
  double pcie_bandwidth_gbs = 0;  // host <-> device, per device, one direction
  double nvme_read_gbs = 0, nvme_write_gbs = 0, nvme_capacity_gib = 0;  // per node
  int bytes_16bit = 2;            // storage of one bf16/fp16 value (the CPU backend keeps them in fp32: 4)
  std::int64_t page_bytes = 4096;     // commit granularity of ZeRO's reserved ranges (GPU: 2 MiB)
  std::int64_t alloc_align_bytes = 64;  // the caching allocator's rounding of every block
  double alloc_reuse = 1.25;            // it reuses a cached block of up to this many times a request

  double peak_tflops(DType dtype) const;  // by compute type: F32, BF16, F16
};

// Throws th::InputError naming the file, line and key for an unknown key, a wrong type, a value
// out of range or a missing required figure.
Machine read_machine(const std::string& path);
// The description as a namelist (what read_machine reads), with `comment` lines on top.
std::string machine_namelist(const Machine& m, const std::string& comment);

// Measures this machine with every rank of `comm` running at once (collective): GEMM rate, memory
// bandwidth, the collective latency and bandwidth between the ranks (with more than one rank),
// NVMe read/write under `nvme_path`, host memory. Figures it cannot measure come from `base`.
// Takes a few seconds. `report` (rank 0) receives one line per measurement.
Machine calibrate_machine(Comm& comm, const Machine& base, const std::string& nvme_path, std::string* report);

}  // namespace th

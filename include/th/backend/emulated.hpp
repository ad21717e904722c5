#pragma once
// The emulated device (run%backend = 'emulated', issue #17): the CUDA backend's memory discipline
// and stream semantics on the CPU kernels, so that the host code a GPU run needs (copies, pinned
// staging, synchronisation) is tested on machines without a GPU. docs/architecture.md, "Backends".
//
//   Device memory  an arena of its own (a memfd mapped twice): the address the host is given is
//                  mapped PROT_NONE, always; the stream's worker reaches the same pages through a
//                  second, writable mapping. Host code that reads or writes device memory without
//                  a copy through the backend faults there and then, as on a GPU, and the job ends
//                  with "[rank r] torch-handle: error: host access to emulated device memory ...".
//   Streams        every kernel, copy and fill is queued and run in issue order on the compute
//                  stream's worker thread; copies issued on Stream::Copy run on a second worker
//                  (the offload traffic's stream), ordered against the first only by
//                  stream_wait(); kernels get the writable aliases of their pointers. Index arrays from
//                  the host (tokens, targets, key lengths) are copied when the call is issued, as a
//                  device backend stages them. A host value (sum_squares, the loss) waits for its
//                  kernel. An exception on the worker is sticky: the next host call rethrows it.
//   Pinned memory  a second arena the host may use, except while an asynchronous copy into it
//                  (or out of it) is in flight: from copy_*_async until the host has waited for an
//                  event recorded after it (or sync()), its pages are PROT_NONE (a copy into host
//                  memory) or read-only (a copy out of it). A missing synchronisation therefore
//                  faults deterministically, whatever the worker's timing:
//                  "... pinned memory ... while an asynchronous copy is in flight".
//   Synchronous copies  host_to_device takes a copy of the source when issued (the host may reuse
//                  it at once); device_to_host and host_view wait for the stream.
//
// Sizes: TH_EMULATED_DEVICE_MB (default 8192) and TH_EMULATED_PINNED_MB (default 8192) of
// address space; pages are committed only when touched.
//
// Fault injection for the tests that show the emulation catches what it is for
// (TH_FAULT="rank:n:kind", th/core/error.hpp; the rank from the launcher's environment):
//   'skip_copy'  the n-th host_view() of the process returns the device address itself instead
//                of a host copy (a forgotten device -> host copy): the host read faults.
//   'skip_wait'  the n-th wait() of the process returns without waiting or lifting the
//                protection of pinned buffers (a forgotten synchronisation): the host read of the
//                staging buffer faults.
//   'skip_stream_wait'  the n-th and every later stream_wait() between the streams is dropped (a forgotten
//                ordering of the copy stream against the compute stream), and every copy on the
//                copy stream starts 20 ms late, so that the compute stream runs ahead of it and
//                reads stale parameters: the run's results differ from the CPU backend's.
#include <cstddef>
#include <cstdint>

#include "th/backend/backend.hpp"

namespace th {

struct EmulatedStats {
  std::int64_t operations = 0;     // queued on the stream so far
  std::int64_t async_copies = 0;   // copy_*_async
  std::int64_t waits = 0;          // wait() calls (sync() makes two)
  std::int64_t stream_waits = 0;   // stream_wait() between the two streams
  std::int64_t host_views = 0;     // host_view() copies
};
EmulatedStats emulated_stats();

// Is p inside the emulated device's arena / pinned arena (tests)?
bool is_emulated_device_address(const void* p);
bool is_emulated_pinned_address(const void* p);

}  // namespace th

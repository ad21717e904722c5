#pragma once
// Debian's parallel HDF5 is built without its thread-safety option: two threads must never be
// inside the library at the same time. The loader reads datasets on its prefetch thread while
// the main thread may write metrics or checkpoints, so every HDF5 user of the process holds this
// one lock around its HDF5 calls.
#include <mutex>

namespace th {

std::mutex& hdf5_mutex();

}  // namespace th

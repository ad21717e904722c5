// The process's one HDF5 lock (th/io/hdf5_lock.hpp): the dataset reader, the checkpoint and the
// metrics writer all hold it around their HDF5 calls.
#include "th/io/hdf5_lock.hpp"

namespace th {

std::mutex& hdf5_mutex() {
  static std::mutex m;
  return m;
}

}  // namespace th

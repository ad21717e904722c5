#pragma once
// The prefetching half of the loader: one background thread that prepares the next step's
// micro-batches (HDF5 reads, padding, masks) while the current step computes.
//
// The job must not run Kokkos kernels (the host space is Serial and belongs to the main thread)
// and must hold hdf5_mutex() around HDF5 calls (the library is not thread-safe here). An
// exception thrown by the job is rethrown by take() on the calling thread.
#include <condition_variable>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "th/model/transformer.hpp"

namespace th {

class Prefetcher {
 public:
  using Job = std::function<std::vector<Batch>()>;
  // background = false runs each job inside take() (used when MPI cannot be called from a
  // second thread); the results are the same.
  explicit Prefetcher(bool background);
  ~Prefetcher();  // waits for the job in flight
  Prefetcher(const Prefetcher&) = delete;
  Prefetcher& operator=(const Prefetcher&) = delete;

  bool background() const { return background_; }
  void submit(Job job);         // at most one job outstanding: take() or discard() it first
  std::vector<Batch> take();    // the job's result (waits for it)
  void discard();               // waits for the outstanding job, if any, and drops it (its exception is rethrown)

 private:
  void loop();
  bool background_;
  std::mutex mu_;
  std::condition_variable cv_;
  Job job_;
  bool pending_ = false, running_ = false, ready_ = false, stop_ = false;
  std::vector<Batch> result_;
  std::exception_ptr error_;
  std::thread thread_;
};

}  // namespace th

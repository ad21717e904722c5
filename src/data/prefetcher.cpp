#include "th/data/prefetcher.hpp"

#include <utility>

#include "th/core/error.hpp"

namespace th {

Prefetcher::Prefetcher(bool background) : background_(background) {
  if (background_) thread_ = std::thread([this] { loop(); });
}

Prefetcher::~Prefetcher() {
  if (!background_) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void Prefetcher::loop() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    cv_.wait(lock, [this] { return stop_ || (pending_ && !running_ && !ready_); });
    if (stop_) return;  // a job not yet started is dropped; one running has finished (we hold mu_)
    running_ = true;
    Job job = std::move(job_);
    lock.unlock();
    std::vector<Batch> out;
    std::exception_ptr err;
    try {
      out = job();
    } catch (...) {
      err = std::current_exception();
    }
    lock.lock();
    result_ = std::move(out);
    error_ = err;
    running_ = false;
    ready_ = true;
    cv_.notify_all();
  }
}

void Prefetcher::submit(Job job) {
  std::lock_guard<std::mutex> lock(mu_);
  TH_CHECK(!pending_, "prefetcher: a job is already outstanding");
  job_ = std::move(job);
  pending_ = true;
  ready_ = false;
  if (background_) cv_.notify_all();
}

std::vector<Batch> Prefetcher::take() {
  std::unique_lock<std::mutex> lock(mu_);
  TH_CHECK(pending_, "prefetcher: take() without a submitted job");
  if (!background_) {
    Job job = std::move(job_);
    pending_ = false;
    lock.unlock();
    return job();
  }
  cv_.wait(lock, [this] { return ready_; });
  pending_ = ready_ = false;
  if (error_) {
    std::exception_ptr e = error_;
    error_ = nullptr;
    std::rethrow_exception(e);
  }
  return std::move(result_);
}

void Prefetcher::discard() {
  std::unique_lock<std::mutex> lock(mu_);
  if (!pending_) return;
  if (background_) cv_.wait(lock, [this] { return ready_; });
  pending_ = ready_ = false;
  job_ = nullptr;
  result_.clear();
  // A job that failed failed on data the run has (a corrupt or changed file): still an error,
  // even if its batches are no longer wanted.
  if (std::exception_ptr e = std::exchange(error_, nullptr)) std::rethrow_exception(e);
}

}  // namespace th

#pragma once
// The emulated device's stream (th/backend/emulated.hpp): one worker thread running the queued
// operations in issue order; an exception is sticky (rethrown at the next host call, the rest of
// the queue skipped). Private to src/backend.
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>

namespace th::emulated {

// One in-order stream on a worker thread. seq n is the n-th operation pushed (from 1).
class Stream {
 public:
  Stream() : worker_([this] { run(); }) {}
  std::uint64_t push(std::function<void()> op) {
    std::lock_guard<std::mutex> lock(m_);
    q_.push_back(std::move(op));
    ++issued_;
    cv_.notify_one();
    return issued_;
  }
  std::uint64_t issued() const {
    std::lock_guard<std::mutex> lock(m_);
    return issued_;
  }
  void wait_for(std::uint64_t seq) {
    std::unique_lock<std::mutex> lock(m_);
    done_cv_.wait(lock, [&] { return done_ >= seq; });
    rethrow_locked();
  }
  bool reached(std::uint64_t seq) const {  // has operation seq finished? (never blocks)
    std::lock_guard<std::mutex> lock(m_);
    return done_ >= seq;
  }
  void check() {  // a sticky error of an earlier operation, at the next host call
    std::lock_guard<std::mutex> lock(m_);
    rethrow_locked();
  }

 private:
  void rethrow_locked() {
    if (error_) {
      std::exception_ptr e = error_;
      error_ = nullptr;
      std::rethrow_exception(e);
    }
  }
  void run() {
    for (;;) {
      std::function<void()> op;
      {
        std::unique_lock<std::mutex> lock(m_);
        cv_.wait(lock, [&] { return !q_.empty(); });
        op = std::move(q_.front());
        q_.pop_front();
      }
      std::exception_ptr e;
      bool failed;
      {
        std::lock_guard<std::mutex> lock(m_);
        failed = failed_;
      }
      if (!failed) {  // after a failure the rest of the stream is skipped (CUDA's sticky error)
        try {
          op();
        } catch (...) {
          e = std::current_exception();
        }
      }
      std::lock_guard<std::mutex> lock(m_);
      if (e) {
        error_ = e;
        failed_ = true;
      }
      ++done_;
      done_cv_.notify_all();
    }
  }
  mutable std::mutex m_;
  std::condition_variable cv_, done_cv_;
  std::deque<std::function<void()>> q_;
  std::uint64_t issued_ = 0, done_ = 0;
  bool failed_ = false;
  std::exception_ptr error_;
  std::thread worker_;  // last: starts after the members it uses exist; never joined (the
                        // backend lives until the process ends)
};

}  // namespace th::emulated

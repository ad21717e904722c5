#pragma once
// Shared by the MPI training tests (tests/mpi/test_resume, test_zero, test_offload,
// test_mixed_precision): fresh per-job folders, final parameters by name, a run of N trainer
// steps, and the comparison of a run with a reference run (stage 0 / no offload / fp32).
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "th/config/config.hpp"
#include "th/parallel/mpi_comm.hpp"
#include "th/parallel/comm.hpp"
#include "th/train/trainer.hpp"

namespace th::testing_support {

// MPI_COMM_WORLD as a Comm, built once per process.
inline MpiComm& world() {
  static MpiComm comm(MPI_COMM_WORLD);
  return comm;
}

// A fresh folder, the same on every rank of `c`, unique to this job (rank 0's pid is part of the
// name), so test runs that overlap on one machine (two build trees, ctest -j) never remove each
// other's files. Collective over c.
inline std::string fresh_test_dir(Comm& c, const std::string& name) {
  std::int64_t pid = c.rank() == 0 ? static_cast<std::int64_t>(::getpid()) : 0;
  c.broadcast(&pid, sizeof pid, 0);
  const std::string dir = ::testing::TempDir() + "th_" + name + "_np" + std::to_string(c.size()) + "_" +
                          std::to_string(pid);
  if (c.rank() == 0) {
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
  }
  c.barrier();
  return dir;
}

// Final parameters by name (flat layouts differ between stages: ZeRO pads its segments).
using NamedParams = std::map<std::string, std::vector<float>>;
inline NamedParams named_params(Trainer& t) {
  const std::vector<float> flat = t.parameters();
  NamedParams out;
  for (const ParamInfo& p : t.model().params().infos())
    out[p.name].assign(flat.begin() + p.offset, flat.begin() + p.offset + p.numel);
  return out;
}

struct TrainedRun {
  std::vector<double> losses;  // per step, mean over ranks
  NamedParams params;          // after the last step
};

inline TrainedRun run_trainer(const Config& cfg, Comm& comm, int steps) {
  Trainer t(cfg, comm);
  TrainedRun r;
  for (int i = 0; i < steps; ++i) r.losses.push_back(t.step().loss);
  r.params = named_params(t);
  return r;
}

// Relative L2 distance of two parameter sets, k_proj biases left out (their gradient is exactly
// zero in exact arithmetic: softmax is shift-invariant, so only rounding moves them).
inline double params_rel_diff(const NamedParams& a, const NamedParams& ref) {
  double d = 0, n = 0;
  for (const auto& [name, v] : ref) {
    if (name.find("k_proj/bias") != std::string::npos) continue;
    const std::vector<float>& w = a.at(name);
    for (std::size_t i = 0; i < v.size(); ++i) {
      d += (double(w[i]) - v[i]) * (double(w[i]) - v[i]);
      n += double(v[i]) * v[i];
    }
  }
  return std::sqrt(d / n);
}

// How far a run is from a reference: the largest relative loss difference over the steps, and
// the relative L2 distance of the final parameters.
struct RunDistance {
  double loss = 0, params = 0;
};
inline RunDistance run_distance(const TrainedRun& a, const TrainedRun& ref) {
  RunDistance d;
  for (std::size_t s = 0; s < a.losses.size() && s < ref.losses.size(); ++s)
    d.loss = std::max(d.loss, std::abs(a.losses[s] - ref.losses[s]) / std::abs(ref.losses[s]));
  d.params = params_rel_diff(a.params, ref.params);
  return d;
}

// Same loss trajectory (relative loss_tol per step) and final parameters (relative L2 param_tol)
// as the reference; rank 0 prints one line tagged `tag`.
inline void expect_same_run(const TrainedRun& a, const TrainedRun& ref, const std::string& what, const char* tag,
                            int rank, double loss_tol = 2e-5, double param_tol = 1e-5) {
  ASSERT_EQ(a.losses.size(), ref.losses.size());
  for (std::size_t s = 0; s < a.losses.size(); ++s)
    EXPECT_NEAR(a.losses[s], ref.losses[s], loss_tol * std::abs(ref.losses[s])) << what << " step " << s + 1;
  const RunDistance d = run_distance(a, ref);
  EXPECT_LT(d.params, param_tol) << what;
  if (rank == 0)
    std::printf("[ %s ] %-44s final loss %.6f (reference %.6f), max loss rel. diff %.1e, params rel. diff %.1e\n",
                tag, what.c_str(), a.losses.back(), ref.losses.back(), d.loss, d.params);
}

}  // namespace th::testing_support

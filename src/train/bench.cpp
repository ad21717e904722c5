// task = 'bench': training throughput on fixed-shape random batches (the shape of
// ../shared/bench/torch_peer.py), with the step split into phases and model-FLOPs utilisation
// against a GEMM rate measured on the spot with the same ranks x threads.
#include <chrono>
#include <cstdio>
#include <vector>

#include "th/core/error.hpp"
#include "th/core/profiler.hpp"
#include "th/core/rng.hpp"
#include "th/data/batching.hpp"
#include "th/parallel/runtime.hpp"
#include "th/backend/backend.hpp"
#include "th/train/grad_sync.hpp"
#include "th/train/optimizer.hpp"
#include "th/train/progress.hpp"
#include "th/train/zero.hpp"
#include "th/train/tasks.hpp"
#include "th/train/device_comm.hpp"

namespace th {

namespace {
using Clock = std::chrono::steady_clock;
double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// Model FLOPs of one step: 3 (forward + 2x backward) x 2 x multiply-adds of every matmul, the
// count the PyTorch peer uses.
double model_flops(const ModelSpec& m, double B, double S, double T) {
  const double d = m.d_model, f = m.d_ff, V = m.vocab_size;
  if (m.decoder_only) {
    const double dec = T * (4 * d * d + 2 * d * f) + 2 * T * T * d;
    return 6 * B * (m.n_decoder_layers * dec + T * d * V);
  }
  const double enc = S * (4 * d * d + 2 * d * f) + 2 * S * S * d;
  const double dec = T * (6 * d * d + 2 * d * f) + S * 2 * d * d + 2 * T * T * d + 2 * T * S * d;
  return 6 * B * (m.n_encoder_layers * enc + m.n_decoder_layers * dec + T * d * V);
}

// fp32 GEMM rate of this rank (1024^3, 20 times) on the run's backend, as the peer measures it.
// Host buffers: the CPU backend's device memory is the host (a device backend would allocate).
// Calls that reached the system allocator: the host pool's, and a device backend's device pool.
std::int64_t system_allocations(Backend& be) {
  const std::int64_t host = host_pool().stats().system_allocations;
  return be.device_is_host() ? host : host + be.pool(MemorySpace::Device).stats().system_allocations;
}

double gemm_rate(Backend& be) {
  Kernels<float>& k = be.f32();
  const int n = 1024;
  std::vector<float> a(static_cast<std::size_t>(n) * n), b(a.size());
  for (std::size_t i = 0; i < a.size(); ++i) {
    a[i] = static_cast<float>(uniform01(1, 1, i) - 0.5);
    b[i] = static_cast<float>(uniform01(1, 2, i) - 0.5);
  }
  // The operands in the backend's device memory (the CPU backend: host memory, no copy).
  Tensor A = be.empty({n, n}, DType::F32, MemCategory::Workspace), B = be.empty({n, n}, DType::F32, MemCategory::Workspace),
         C = be.empty({n, n}, DType::F32, MemCategory::Workspace);
  copy_to_device(be, A.data<float>(), a.data(), A.numel());
  copy_to_device(be, B.data<float>(), b.data(), B.numel());
  const float *pa = A.data<float>(), *pb = B.data<float>();
  float* pc = C.data<float>();
  k.gemm(false, false, n, n, n, 1.f, pa, n, pb, n, 0.f, pc, n);
  be.sync();
  const auto t0 = Clock::now();
  for (int r = 0; r < 20; ++r) k.gemm(false, false, n, n, n, 1.f, pa, n, pb, n, 0.f, pc, n);
  be.sync();
  return 20.0 * 2.0 * n * n * n / since(t0);
}
}  // namespace

void run_bench(const Config& cfg, Comm& comm) {
  const bool root = comm.rank() == 0;
  if (cfg.model.vocab_size <= 0) throw InputError("task = 'bench' needs model%vocab_size > 0");
  if (cfg.bench.batch % comm.size() != 0)
    throw InputError("bench%batch = " + std::to_string(cfg.bench.batch) + " is not divisible by the " +
                     std::to_string(comm.size()) + " ranks");
  const ModelSpec base_spec = model_spec(cfg, cfg.model.vocab_size);
  const ModelSpec& spec = base_spec;
  // A fixed random batch per rank, no padding: B_local rows of seq_len source and target tokens.
  const int B = cfg.bench.batch / comm.size(), L = cfg.bench.seq_len;
  Batch batch;
  batch.B = B;
  batch.S = spec.decoder_only ? 0 : L;
  batch.T = L;
  const auto seed = static_cast<std::uint64_t>(cfg.run.seed) + static_cast<std::uint64_t>(comm.rank());
  auto token = [&](std::uint64_t stream, std::uint64_t i) {
    return SpecialTokens::first_regular +
           static_cast<int>(uniform01(seed, stream, i) * (spec.vocab_size - SpecialTokens::first_regular));
  };
  for (int i = 0; i < B * batch.S; ++i) batch.src.push_back(token(1, static_cast<std::uint64_t>(i)));
  for (int i = 0; i < B * L; ++i) {
    batch.tgt_in.push_back(token(2, static_cast<std::uint64_t>(i)));
    batch.tgt_out.push_back(token(3, static_cast<std::uint64_t>(i)));
  }
  batch.src_len.assign(spec.decoder_only ? 0 : B, L);
  batch.tgt_len.assign(B, L);

  // One timed pass of `steps` steps after `warmup` untimed ones, gradients synchronised with or
  // without overlap; returns per-step phase times (rank 0's view).
  struct Pass {
    double step_s = 0, fwd = 0, bwd = 0, exposed_comm = 0, opt = 0;
    std::int64_t allocations = 0;
    double psi = 0, comm_bytes = 0, theory_bytes = 0;  // per step per rank
    std::string theory;                                // how theory_bytes was computed
  };
  const int steps = cfg.bench.steps, warmup = cfg.bench.warmup;
  Backend& backend = run_backend(cfg);  // one backend for every pass
  const DeviceCommAttachment device_comm(backend, comm, cfg.parallel.comm);  // NCCL where asked and built
  std::uint64_t micro = 0;
  // Each pass builds its model and ZeRO engine (parallel%zero_stage) afresh: same initial values.
  auto timed_pass = [&](bool overlap, int n_warmup) {
    ZeroOptions zopt = zero_options(cfg);
    zopt.overlap = overlap;
    ModelSpec pass_spec = base_spec;
    ZeroEngine::configure(pass_spec, zopt, comm.size());
    Transformer<float> model(pass_spec, backend);
    ZeroEngine engine(comm, model, zopt);
    Pass p;
    double bytes0 = 0;
    std::int64_t allocs0 = 0;
    Clock::time_point start;
    for (int s = 0; s < n_warmup + steps; ++s) {
      if (s == n_warmup) {
        comm.barrier();
        start = Clock::now();
        p = Pass{};
        allocs0 = system_allocations(model.backend());
        bytes0 = comm.traffic().total();
      }
      engine.zero_grad();
      auto t0 = Clock::now();
      model.forward(batch, seed, ++micro);
      p.fwd += since(t0);
      t0 = Clock::now();
      engine.begin_backward(true);
      model.backward(1.0, engine.hook());
      p.bwd += since(t0);
      t0 = Clock::now();
      engine.finish_backward();
      p.exposed_comm += since(t0);
      t0 = Clock::now();
      engine.clip_and_norm(cfg.optim.clip_norm);
      engine.update(cfg.optim.lr);
      p.opt += since(t0);
    }
    p.comm_bytes = (comm.traffic().total() - bytes0) / steps;
    p.theory_bytes = engine.theory_bytes_per_step();
    p.theory = engine.theory_formula();
    p.psi = static_cast<double>(model.params().size());
    model.backend().sync();  // a device backend may still be running the last update
    comm.barrier();
    p.step_s = since(start) / steps;
    p.fwd /= steps; p.bwd /= steps; p.exposed_comm /= steps; p.opt /= steps;
    p.allocations = system_allocations(model.backend()) - allocs0;
    return p;
  };
  const bool overlap = cfg.parallel.overlap_comm;
  const Pass main_pass = timed_pass(overlap, warmup);
  // With several ranks, the same steps with the other overlap setting, to measure how much of
  // the communication backward hides.
  Pass other;
  if (comm.size() > 1) other = timed_pass(!overlap, 1);
  // profile%enabled: the profiler's cost. The same steps with every scope recorded (the window
  // open over the whole pass), between two passes with it off; on vs the mean of the two offs.
  Pass prof_on, prof_off;
  double events_per_step = 0;
  if (cfg.profile.enabled) {
    Profiler& prof = profiler();
    prof.configure(true, 1, std::int64_t{1} << 40, std::size_t{1} << 20);
    prof.set_step(1);
    prof_on = timed_pass(overlap, 1);
    events_per_step = static_cast<double>(prof.num_events()) / (steps + 1);
    prof.configure(false, 0, 0);
    prof.clear();
    prof_off = timed_pass(overlap, 1);
  }
  const Pass& on = overlap ? main_pass : other;
  const Pass& off = overlap ? other : main_pass;
  const double step_s = main_pass.step_s;
  const std::int64_t new_allocs = main_pass.allocations;
  const double rate = comm.sum(gemm_rate(backend));  // all ranks' GEMM rates together, as the peer does
  const double tokens = static_cast<double>(cfg.bench.batch) * (batch.S + batch.T);
  const double flops = model_flops(spec, cfg.bench.batch, batch.S, batch.T);
  const double mfu = flops / step_s / rate;
  if (root) {
    std::printf("bench: %s d_model %d heads %d d_ff %d layers %d+%d vocab %d, global batch %d x %d, %d ranks x %d threads\n",
                cfg.model.arch.c_str(), spec.d_model, spec.n_heads, spec.d_ff, spec.n_encoder_layers,
                spec.n_decoder_layers, spec.vocab_size, cfg.bench.batch, L, comm.size(), blas_threads());
    std::printf("  step %.4f s = forward %.4f + backward %.4f + exposed allreduce %.4f + optimizer %.4f "
                "(rank 0, per step, overlap_comm %s)\n", step_s, main_pass.fwd, main_pass.bwd, main_pass.exposed_comm,
                main_pass.opt, overlap ? "on" : "off");
    if (comm.size() > 1) {
      std::printf("  ZeRO stage %d: %.2f MB sent per step per rank (collectives counted under ring costs), theory %.2f MB "
                  "(%s, Psi = %.0f parameters, padded), ratio %.4f\n",
                  cfg.parallel.zero_stage, main_pass.comm_bytes / 1e6, main_pass.theory_bytes / 1e6,
                  main_pass.theory.c_str(), main_pass.psi, main_pass.comm_bytes / main_pass.theory_bytes);
      std::printf("  exposed communication per step: %.4f s with overlap, %.4f s without (%.0f%% hidden); step %.4f s "
                  "with, %.4f s without\n", on.exposed_comm, off.exposed_comm,
                  off.exposed_comm > 0 ? 100.0 * (1.0 - on.exposed_comm / off.exposed_comm) : 0.0, on.step_s, off.step_s);
    }
    std::printf("  model %.2f GFLOP/step, %.1f GFLOP/s; GEMM rate measured %.1f GFLOP/s\n", flops / 1e9,
                flops / step_s / 1e9, rate / 1e9);
    std::printf("  system allocations after warm-up: %lld (0 = steady state allocates nothing)\n",
                static_cast<long long>(new_allocs));
    if (cfg.profile.enabled) {
      const double off_s = 0.5 * (main_pass.step_s + prof_off.step_s);
      // Disabled, each instrumented place is an atomic load and a branch (~3 ns, test_profiler).
      std::printf("  profiler: step %.4f s recording (%.0f events per step per rank) vs %.4f s off (mean of %.4f "
                  "and %.4f): overhead %+.2f%%; when off, %.0f scopes x ~3 ns = %.1e of the step\n",
                  prof_on.step_s, events_per_step, off_s, main_pass.step_s, prof_off.step_s,
                  100.0 * (prof_on.step_s / off_s - 1.0), events_per_step, events_per_step * 3e-9 / off_s);
    }
    print_memory_report(backend);
    std::printf("bench: tokens_per_s=%.1f step_s=%.4f mfu=%.3f\n", tokens / step_s, step_s, mfu);
    std::fflush(stdout);
  }
}

}  // namespace th

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "th/config/config.hpp"
#include "th/core/version.hpp"
#include "th/io/deck.hpp"
#include "th/io/deck_doc.hpp"
#include "th/io/run_lock.hpp"
#include "th/app.hpp"
#include "th/core/error.hpp"
#include "th/data/prepare.hpp"
#include "th/parallel/agree.hpp"
#include "th/plan/plan.hpp"
#include "th/eval/tasks.hpp"
#include "th/kernels/gemm_engine.hpp"
#include "th/train/tasks.hpp"
#ifdef TH_HAVE_CUDA
#include "th/kernels/cuda_profile.hpp"
#endif

namespace th {

namespace {
const char* kUsage =
    "usage: torch-handle DECK [--set group%key=value ...]\n"
    "       torch-handle --help | --version\n"
    "       torch-handle --deck-keys[=FILE]\n"
    "Runs the task of the namelist deck DECK (see docs/deck.md); under mpirun/srun every rank runs it.\n"
    "--deck-keys prints the tables of every deck key (markdown); --deck-keys=FILE prints FILE\n"
    "(docs/deck.md) with the tables between its deck-keys markers regenerated.\n";

struct CommandLine {
  std::string deck;
  std::vector<std::string> overrides;
  bool help = false, version = false;
  bool deck_keys = false;
  std::string deck_keys_file;  // --deck-keys=FILE
};

CommandLine parse_command_line(int argc, char** argv) {
  CommandLine cl;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      cl.help = true;
    } else if (a == "--version") {
      cl.version = true;
    } else if (a == "--deck-keys") {
      cl.deck_keys = true;
    } else if (a.rfind("--deck-keys=", 0) == 0) {
      cl.deck_keys = true;
      cl.deck_keys_file = a.substr(12);
    } else if (a == "--set") {
      if (i + 1 >= argc) throw InputError("command line: --set needs group%key=value");
      cl.overrides.push_back(argv[++i]);
    } else if (a.rfind("--set=", 0) == 0) {
      cl.overrides.push_back(a.substr(6));
    } else if (!a.empty() && a[0] == '-') {
      throw InputError("command line: unknown option '" + a + "'\n" + kUsage);
    } else if (cl.deck.empty()) {
      cl.deck = a;
    } else {
      throw InputError("command line: more than one deck ('" + cl.deck + "', '" + a + "')");
    }
  }
  if (cl.deck.empty() && !cl.help && !cl.version && !cl.deck_keys) throw InputError(std::string("command line: no deck given\n") + kUsage);
  return cl;
}

// Rank 0 reads, parses and validates; every rank gets either the resolved deck or the error text,
// so a bad deck stops all ranks the same way, before any work, with one message.
Config load_config(Comm& comm, const CommandLine& cl) {
  std::string text;
  agree_root(comm, [&] {
    text = Deck::from_file(cl.deck, cl.overrides).to_namelist();
    return std::string();
  }, ErrorKind::Input);
  comm.broadcast_string(text, 0);
  return make_config(Deck::from_text(text, cl.deck));
}

// evaluate, translate and generate usually run in the training run's folder: their resolved decks get
// their own names so the training deck stays there.
std::string resolved_deck_name(const std::string& task) {
  return task == "evaluate" || task == "translate" || task == "generate" ? "deck." + task + ".resolved.nml"
                                                                          : "deck.resolved.nml";
}

void prepare_output_dir(Comm& comm, const Config& cfg) {
  agree_root(comm, [&]() -> std::string {
    try {
      std::filesystem::create_directories(cfg.run.output_dir);
      const std::string path = cfg.run.output_dir + "/" + resolved_deck_name(cfg.run.task);
      std::ofstream out(path);
      out << cfg.resolved_deck;
      return out ? "" : "cannot write " + path;
    } catch (const std::exception& e) {
      return "run%output_dir = '" + cfg.run.output_dir + "': " + e.what();
    }
  }, ErrorKind::Input);
}

// The GEMM engine's plan (th/kernels/gemm_engine.hpp), the same on every rank: every rank probes
// oneDNN and, for run%gemm = 'auto', times both providers at once (as the ranks will compute
// during the run); the weakest rank's capabilities and the summed times decide, and rank 0's
// verdict is broadcast so that no rounding of the sums can split the ranks. Returns the banner line.
std::string choose_gemm(Comm& comm, const Config& cfg) {
  const cpu::GemmRequest request = cpu::parse_gemm_request(cfg.run.gemm);
  cpu::GemmCapabilities caps = cpu::gemm_capabilities();
  caps.onednn_fp32 = comm.all_true(caps.onednn_fp32);
  caps.onednn_bf16 = comm.all_true(caps.onednn_bf16);
  caps.bf16_native = comm.all_true(caps.bf16_native);
  cpu::GemmTiming timing;
  if (request == cpu::GemmRequest::Auto) {
    timing = cpu::time_gemm_providers(cfg.model.d_model, cfg.model.d_ff, cfg.precision.dtype == "bf16");
    const bool onednn_everywhere = comm.all_true(timing.onednn_s > 0);
    const bool bf16_everywhere = comm.all_true(timing.onednn_bf16_s > 0);
    timing.flops = comm.sum(timing.flops);
    timing.openblas_s = comm.sum(timing.openblas_s);
    timing.onednn_s = onednn_everywhere ? comm.sum(timing.onednn_s) : 0.0;
    timing.onednn_bf16_s = bf16_everywhere ? comm.sum(timing.onednn_bf16_s) : 0.0;
  }
  const cpu::GemmTiming* timed = request == cpu::GemmRequest::Auto ? &timing : nullptr;
  cpu::GemmPlan plan = cpu::choose_gemm_plan(request, caps, timed, cfg.precision.dtype == "bf16");
  comm.broadcast(&plan, sizeof plan, 0);
  cpu::set_gemm_plan(plan);
  return cpu::describe_gemm_plan(plan, caps, timed, request);
}

void print_banner(Runtime& rt, const Config& cfg, const std::string& deck, const std::string& backend,
                  const std::string& gemm) {
  Comm& w = rt.world();
  if (w.rank() != 0) return;
  std::FILE* out = task_log(cfg);
  std::fprintf(out, "torch-handle %s\n", version_string().c_str());
  std::fprintf(out, "  ranks %d on %d node(s), %d per node; MPI thread level %s\n", w.size(), w.num_nodes(),
               w.local_size(), rt.thread_level().c_str());
  std::fprintf(out, "  backend %s; Kokkos host space %s; %d thread(s) per rank\n", backend.c_str(),
               rt.kokkos_host_space().c_str(), rt.host_threads());
  if (!gemm.empty()) std::fprintf(out, "  GEMM: %s\n", gemm.c_str());
  std::fprintf(out, "  deck %s; task %s; output %s\n", deck.c_str(), cfg.run.task.c_str(), cfg.run.output_dir.c_str());
  std::fflush(out);
}

// The run's backend (th/backend/backend.hpp): 'cuda' and 'emulated' stop here with an input error;
// 'auto' picks cuda once the CUDA training path exists.
std::string choose_backend(const Config& cfg) { return run_backend(cfg).name(); }
}  // namespace

int run_app(int argc, char** argv, Runtime& rt) {
  const CommandLine cl = parse_command_line(argc, argv);
  if (cl.help || cl.version) {
    if (rt.world().rank() == 0) std::printf("torch-handle %s\n%s", version_string().c_str(), cl.help ? kUsage : "");
    return 0;
  }
  if (cl.deck_keys) {
    // Every rank reads the file, so a missing one is the same InputError everywhere.
    const std::string text = cl.deck_keys_file.empty() ? deck_doc_tables()
                                                       : deck_doc_update_file(cl.deck_keys_file);
    if (rt.world().rank() == 0) std::fputs(text.c_str(), stdout);
    return 0;
  }
  const Config cfg = load_config(rt.world(), cl);
  set_backend_local_rank(rt.world().local_rank());  // one GPU per local rank (the CUDA backend)
  const std::string backend = choose_backend(cfg);
#ifdef TH_HAVE_CUDA
  cuda::install_nvtx_ranges(profiler());  // profiled scopes also become NVTX ranges (Nsight Systems)
#endif
  if (cfg.run.threads > 0) rt.set_host_threads(cfg.run.threads);
  const std::vector<RunLock> locks = lock_run_folders(rt.world(), cfg);  // before anything is written there
  prepare_output_dir(rt.world(), cfg);
  // After the thread count (the calibration runs with it); 'prepare' does no GEMMs.
  const std::string gemm = cfg.run.task == "prepare" ? "" : choose_gemm(rt.world(), cfg);
  print_banner(rt, cfg, cl.deck, backend, gemm);
  if (cfg.run.task == "train") {
    run_train(cfg, rt.world());
  } else if (cfg.run.task == "bench") {
    run_bench(cfg, rt.world());
  } else if (cfg.run.task == "prepare") {
    run_prepare(cfg, rt.world());
  } else if (cfg.run.task == "evaluate") {
    run_evaluate(cfg, rt.world());
  } else if (cfg.run.task == "translate") {
    run_translate(cfg, rt.world());
  } else if (cfg.run.task == "plan") {
    run_plan(cfg, rt.world());
  } else if (cfg.run.task == "generate") {
    run_generate(cfg, rt.world());
  } else {
    throw InputError("run%task = '" + cfg.run.task + "' is not a task of this build");
  }
  return 0;
}

}  // namespace th

#include "th/train/memory_budget.hpp"

#include <algorithm>
#include <cstdio>
#include <string>

#include "th/core/error.hpp"
#include "th/core/host_memory.hpp"
#include "th/train/tasks.hpp"
#include "th/train/zero.hpp"

namespace th {

namespace {

std::string bytes_text(double b) {
  char s[64];
  std::snprintf(s, sizeof s, "%.3g bytes (%.3g GiB)", b, b / (1024.0 * 1024.0 * 1024.0));
  return s;
}

// The tightest share of memory over all ranks, the same on every rank (so is the verdict).
HostMemory least_available(Comm& comm) {
  const HostMemory mine = available_host_memory(comm.local_size());
  double v = mine.bytes >= 0 ? static_cast<double>(mine.bytes) : 1e300;
  double least = v;
  comm.allreduce(&least, 1, ReduceOp::Min);
  // The source named is the lowest rank's whose figure is the least (a string cannot be reduced:
  // the ranks agree on a rank number instead).
  double who = v == least ? static_cast<double>(comm.rank()) : 1e300;
  comm.allreduce(&who, 1, ReduceOp::Min);
  std::string source = mine.source;
  comm.broadcast_string(source, static_cast<int>(who < 1e299 ? who : 0));
  return {least < 1e299 ? static_cast<std::int64_t>(least) : -1, source};
}

[[noreturn]] void refuse(const std::string& what, double need, const HostMemory& have) {
  throw InputError(what + " at least " + bytes_text(need) + " per rank, but " + bytes_text(static_cast<double>(have.bytes)) +
                   " are available (" + have.source + "); lower it, or run on more nodes or ranks");
}

}  // namespace

void check_synthetic_data_fits(const Config& cfg, Comm& comm) {
  if (cfg.data.synthetic == "none") return;
  const double min_len = std::max(1, cfg.data.synthetic_min_len);
  const double per_example = 48 + 8 + 8 * min_len;  // two std::vector<int>, the lengths, src + tgt tokens
  const double train = cfg.data.synthetic_samples, valid = cfg.data.synthetic_valid_samples;
  const double need = (train + valid) * per_example;
  if (need < 64e6) return;  // nothing to ask the system about
  const HostMemory have = least_available(comm);
  if (have.bytes < 0 || need <= static_cast<double>(have.bytes)) return;
  const char* key = train >= valid ? "data%synthetic_samples" : "data%synthetic_valid_samples";
  char what[256];
  std::snprintf(what, sizeof what, "%s = %.0f: the synthetic sets (%.0f + %.0f examples of at least %.0f tokens) need", key,
                train >= valid ? train : valid, train, valid, min_len);
  refuse(what, need, have);
}

void check_model_fits(const Config& cfg, const ModelSpec& spec, Comm& comm, bool weights_only) {
  const double psi = transformer_parameter_count(spec);
  // Model states per rank: the engine's own accounting for its stage and offload (fp32).
  const double states = weights_only ? 4 * psi : ZeroEngine::planned_state_bytes(zero_options(cfg), psi, comm.size());
  // The sinusoidal table, a buffer on every rank (a learned table is one of the parameters, in psi).
  const double table = spec.positions == PositionEncoding::Sinusoidal ? 4.0 * spec.max_len * spec.d_model : 0.0;
  const double need = states + table;
  if (need < 64e6) return;
  const HostMemory have = least_available(comm);
  if (have.bytes < 0 || need <= static_cast<double>(have.bytes)) return;
  char what[512];
  std::snprintf(what, sizeof what,
                "the model of model%%d_model = %d, model%%d_ff = %d, %d encoder + %d decoder layers and a vocabulary of "
                "%d (%.3g parameters; %s at ZeRO stage %d on %d rank(s)) needs",
                spec.d_model, spec.d_ff, spec.decoder_only ? 0 : spec.n_encoder_layers, spec.n_decoder_layers,
                spec.vocab_size, psi, weights_only ? "its fp32 weights" : "parameters, gradients and Adam moments",
                weights_only ? 0 : cfg.parallel.zero_stage,
                comm.size());
  refuse(what, need, have);
}

}  // namespace th

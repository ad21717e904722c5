// task = 'evaluate' for a language model (data%packing = 'concat'): the test split's token
// stream cut into blocks as in validation (every token but the first predicted once), the
// perplexity per token and per byte, data-parallel (micro-batch k on rank k mod N).
#include <cstdio>

#include "th/io/metrics.hpp"
#include "th/data/dataset_h5.hpp"
#include "th/data/lm_dataset.hpp"
#include "th/data/packed_loader.hpp"
#include "th/data/tokenizer.hpp"
#include "th/core/error.hpp"
#include "th/eval/evaluate.hpp"
#include "th/eval/tasks.hpp"
#include "th/train/tasks.hpp"

namespace th {

void run_evaluate_lm(const Config& cfg, Comm& comm) {
  if (cfg.data.test_file.empty())
    throw InputError("run%task = 'evaluate' needs data%test_file (the test split written by run%task = 'prepare')");
  LmDatasetReader test(cfg.data.test_file, comm);
  if (test.info().tokens < 2)
    throw InputError("data%test_file = '" + test.info().path + "' holds " + std::to_string(test.info().tokens) +
                     " token(s): nothing to predict (raise prepare%test_fraction and prepare again)");
  const int vocab = lm_vocab_size(cfg, test.info().vocab_size, "data%test_file", test.info().path);
  std::vector<float> bytes = Tokenizer(test.tokenizer_model(), test.info().path).piece_bytes();
  bytes.resize(static_cast<std::size_t>(vocab), 0.0f);
  // The checkpoint must have been trained with this tokenizer (its fingerprint, th/data/dataset_h5.hpp).
  LoadedModel m = load_trained_model(cfg, comm, vocab, "data%test_file = '" + test.info().path + "'",
                                     tokenizer_fingerprint(test.tokenizer_model()));
  const int L = cfg.model.max_len;
  const std::vector<Batch> batches = evaluation_batches(test, L, blocks_per_micro_batch(cfg.data.max_tokens, L),
                                                        cfg.data.document_mask, comm.rank(), comm.size());
  const EvalStats s = evaluate_batches(*m.model, batches, comm, bytes);
  if (comm.rank() != 0) return;
  std::printf("test set: %s, %lld documents, %lld tokens in blocks of %d%s\n", test.info().path.c_str(),
              static_cast<long long>(test.info().documents), static_cast<long long>(test.info().tokens), L,
              cfg.data.document_mask ? " (document mask)" : "");
  std::printf("evaluate: loss %.4f, perplexity %.3f per token, %.4f per byte (%.4f bits per byte), token accuracy "
              "%.2f%% (%.0f tokens, %.0f bytes)\n",
              s.loss, s.perplexity, s.byte_perplexity, s.bits_per_byte, 100.0 * s.accuracy, s.tokens, s.bytes);
  MetricsFile out(cfg.run.output_dir + "/evaluate.h5", cfg.resolved_deck);
  out.append("test", {{"step", double(m.step)}, {"loss", s.loss}, {"perplexity", s.perplexity},
                      {"accuracy", s.accuracy}, {"tokens", s.tokens}, {"bytes", s.bytes},
                      {"byte_perplexity", s.byte_perplexity}, {"bits_per_byte", s.bits_per_byte}});
  std::printf("evaluate: figures in %s/evaluate.h5\n", cfg.run.output_dir.c_str());
}

}  // namespace th

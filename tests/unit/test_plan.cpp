// The planner (th/plan) against independent references: the ZeRO paper's Table 1 (model states
// per device, to the printed digits), the paper's communication volumes (2 Psi for stages 1-2,
// 3 Psi for stage 3), the flat layout the real model builds for each stage, the bare GPT-3
// parameter count, the alpha-beta closed forms; the machine files and the &plan deck keys.
// The memory agreement with real runs is tests/mpi/test_plan_memory.cpp.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <string>

#include "th/config/config.hpp"
#include "th/io/deck.hpp"
#include "th/core/error.hpp"
#include "th/model/transformer.hpp"
#include "th/plan/plan.hpp"
#include "th/train/tasks.hpp"
#include "th/train/zero.hpp"

using namespace th;

namespace {

// The value in GB (1e9 bytes) with as many decimals as the paper prints.
std::string printed(double bytes, int decimals) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, bytes / 1e9);
  return buf;
}

Config deck(const std::string& text) { return make_config(Deck::from_text(text, "plan-test")); }

std::string input_error(const std::string& text) {
  try {
    Deck::from_text(text, "plan-test");
  } catch (const InputError& e) {
    return e.what();
  }
  return "";
}

}  // namespace

// Rajbhandari et al. 2019, Table 1 (mixed-precision Adam, K = 12), Psi = 7.5B: per-device
// model states of the baseline and of Pos / Pos+g / Pos+g+p at Nd = 64 (also the paper's
// Figure 1) and Nd = 1024.
TEST(PlanZeroPaper, TableOneSevenPointFiveBillion) {
  const double psi = 7.5e9;
  const StateBytes b = paper_state_bytes();
  struct Row {
    int nd, stage;
    const char* printed;
    int decimals;
  } rows[] = {
      {64, 0, "120", 0},   {64, 1, "31.4", 1},   {64, 2, "16.6", 1},   {64, 3, "1.88", 2},
      {1024, 0, "120", 0}, {1024, 1, "30.1", 1}, {1024, 2, "15.1", 1}, {1024, 3, "0.12", 2},
  };
  for (const Row& r : rows)
    EXPECT_EQ(printed(model_states(r.stage, r.nd, psi, b).total(), r.decimals), r.printed)
        << "Nd " << r.nd << ", stage " << r.stage;
  // And the formulas themselves, to the byte: 16 Psi, 4 Psi + 12 Psi/Nd, 2 Psi + 14 Psi/Nd, 16 Psi/Nd.
  for (int nd : {1, 4, 64, 1024}) {
    EXPECT_DOUBLE_EQ(model_states(0, nd, psi, b).total(), 16 * psi);
    EXPECT_DOUBLE_EQ(model_states(1, nd, psi, b).total(), 4 * psi + 12 * psi / nd);
    EXPECT_DOUBLE_EQ(model_states(2, nd, psi, b).total(), 2 * psi + 14 * psi / nd);
    EXPECT_DOUBLE_EQ(model_states(3, nd, psi, b).total(), 16 * psi / nd);
  }
}

// Our engine keeps fp32 values and gradients (16Psi at stage 0, the engine's own formula) and an
// fp32 master with 16-bit compute; its gradient partition is fp32 (the paper's is fp16).
TEST(PlanZeroPaper, EngineBytesPerElement) {
  Machine gpu;
  gpu.bytes_16bit = 2;
  const StateBytes f32 = engine_state_bytes(DType::F32, gpu), bf16 = engine_state_bytes(DType::BF16, gpu);
  EXPECT_DOUBLE_EQ(model_states(0, 8, 1000, f32).total(), 16 * 1000.0);
  EXPECT_DOUBLE_EQ(model_states(0, 8, 1000, bf16).total(), 16 * 1000.0);        // 2 + 2 + 12
  EXPECT_DOUBLE_EQ(model_states(2, 8, 1000, bf16).total(), 2000 + 16 * 1000 / 8.0);  // fp32 partition
}

// The flat layout restated by the planner is the one the real model builds for each stage and
// world size (ZeroEngine::configure, then the Transformer's ParamStore).
TEST(PlanLayout, PaddedSizeIsTheModelsLayout) {
  for (const char* positions : {"sinusoidal", "learned"}) {
    for (const char* arch : {"encoder-decoder", "decoder-only"}) {
      const std::string enc = std::string(arch) == "decoder-only" ? "0" : "2";
      const Config cfg = deck(std::string("&run task = 'plan' /\n&model arch = '") + arch +
                              "', d_model = 48, n_heads = 4, d_ff = 100, n_encoder_layers = " + enc +
                              ", n_decoder_layers = 3, norm = 'pre', tie_embeddings = F, vocab_size = 333, "
                              "max_len = 40, positions = '" + positions + "' /\n"
                              "&parallel bucket_mb = 0.03 /\n&plan calibrate = T /\n");
      const PlanModel m = plan_model(cfg);
      for (int stage = 0; stage <= 3; ++stage)
        for (int world : {1, 3, 4, 7}) {
          ZeroOptions z = zero_options(cfg);
          z.stage = stage;
          ModelSpec spec = model_spec(cfg, cfg.model.vocab_size);
          spec.external_param_storage = false;
          ZeroEngine::configure(spec, z, world);
          spec.external_param_storage = false;  // let the model allocate: only the layout is compared
          Transformer<float> model(spec);
          model.params().end_unit();
          const FlatLayout f = flat_layout(m, stage, world, cfg.parallel.bucket_mb);
          EXPECT_EQ(f.padded, model.params().size()) << arch << " " << positions << " stage " << stage << " world " << world;
          std::int64_t segments = 0;
          for (const auto& u : f.units) segments += static_cast<std::int64_t>(u.segments.size());
          if (stage > 0)
            EXPECT_EQ(segments, static_cast<std::int64_t>(model.params().segments().size()))
                << arch << " " << positions << " stage " << stage << " world " << world;
          EXPECT_EQ(m.params(), [&] {
            std::int64_t n = 0;
            for (const ParamInfo& p : model.params().infos()) n += p.numel;
            return n;
          }()) << arch << " " << positions;
        }
    }
  }
}

// A bare count: GPT-3 175B's shape (Brown et al. 2020: 96 layers, d_model 12288, 96 heads).
TEST(PlanModel, BareParameterCount) {
  const PlanModel m = bare_gpt(175e9, 96, 12288, 96);
  EXPECT_NEAR(double(m.params()), 175e9, 12288.0);  // the vocabulary is a whole number of rows
  EXPECT_EQ(m.units.size(), 98u);                   // embedding, 96 blocks, final norm
  EXPECT_EQ(m.d_ff, 4 * 12288);
  EXPECT_GT(m.vocab, 50000);  // 175e9 - 96 (12 w^2 + 13 w) - 2w = 1.04e9 parameters of embedding
  EXPECT_EQ(bare_gpt(1e9, 4, 1024, 0).n_heads, 8);  // 0: width / 128
  EXPECT_THROW(bare_gpt(1e6, 96, 12288, 96), InputError);
}

// Alpha-beta closed forms (Thakur et al. 2005): ring all-reduce 2(N-1) a + 2(N-1)/N B/b;
// reduce-scatter and all-gather half of it; the tree wins for small messages on many ranks.
TEST(PlanCollectives, ClosedForms) {
  const Link k{5e-6, 50e9};
  const double B = 1e9;
  EXPECT_DOUBLE_EQ(ring_allreduce_s(B, 8, k), 2 * 7 * 5e-6 + 2.0 * 7 / 8 * B / 50e9);
  EXPECT_DOUBLE_EQ(reduce_scatter_s(B, 8, k) + all_gather_s(B, 8, k), ring_allreduce_s(B, 8, k));
  EXPECT_DOUBLE_EQ(allreduce_s(B, 8, k), ring_allreduce_s(B, 8, k));  // bandwidth-bound: the ring
  EXPECT_DOUBLE_EQ(allreduce_s(1024, 1024, k), tree_allreduce_s(1024, 1024, k));  // latency-bound: the tree
  EXPECT_LT(tree_allreduce_s(1024, 1024, k), ring_allreduce_s(1024, 1024, k));
  EXPECT_EQ(allreduce_s(B, 1, k), 0.0);
}

// Communication per step of each stage against the paper's volumes: 2 Psi (stages 0-2: reduce-
// scatter + all-gather, or an all-reduce) and 3 Psi (stage 3: two gathers and a reduce-scatter),
// at the ring's (N-1)/N, on a latency-free link.
TEST(PlanTime, CommunicationVolumeOfEachStage) {
  Machine mc = read_machine(TH_TEST_DIR "/../inputs/machines/h200_8gpu_ib.nml");
  mc.intra_latency_us = mc.inter_latency_us = 0;
  const PlanModel m = bare_gpt(1.3e9, 24, 2048, 16);
  PlanBatch b;
  b.tgt = 1024;
  ZeroKnobs z;
  z.persistence_threshold = 0;  // every unit is gathered
  for (int stage = 0; stage <= 3; ++stage) {
    Layout l;
    l.nodes = 4;
    l.ranks_per_node = 8;
    l.stage = stage;
    const StepTime t = estimate_time(m, b, l, z, mc);
    const double psi = double(flat_layout(m, stage, 32, z.bucket_mb).padded), n = 32;
    const double beta = std::min(mc.intra_bandwidth_gbs, mc.inter_bandwidth_gbs) * 1e9;
    const double bytes = (stage == 3 ? 3 : 2) * psi * 4 * (n - 1) / n;  // fp32 values and gradients
    EXPECT_NEAR(t.comm_total, bytes / beta, 1e-9 * bytes / beta) << "stage " << stage;
  }
}

TEST(PlanMachine, ShippedFilesReadAndErrorsNameTheKey) {
  const Machine h = read_machine(TH_TEST_DIR "/../inputs/machines/h200_8gpu_ib.nml");
  EXPECT_EQ(h.device, DeviceKind::Gpu);
  EXPECT_EQ(h.devices_per_node, 8);
  EXPECT_GT(h.device_memory_gib, 100);
  const Machine c = read_machine(TH_TEST_DIR "/../inputs/machines/cpu_dev2.nml");
  EXPECT_EQ(c.device, DeviceKind::Cpu);
  EXPECT_EQ(c.bytes_16bit, 4);
  const std::string path = ::testing::TempDir() + "th_plan_bad_machine.nml";
  std::ofstream(path) << "&machine name = 'x', device = 'gpu', devices_per_node = 8\n  hbm_gib = 80 /\n";
  try {
    read_machine(path);
    ADD_FAILURE() << "no error for an unknown key";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find(path + ":2: 'machine%hbm_gib'"), std::string::npos) << e.what();
  }
  std::ofstream(path) << "&machine name = 'x', device = 'gpu', devices_per_node = 8 /\n";
  EXPECT_THROW(read_machine(path), InputError);  // required figures missing
  EXPECT_THROW(read_machine(path + ".none"), InputError);
}

TEST(PlanDeck, ListKeysAndRules) {
  const Config c = deck("&run task = 'plan' /\n&model vocab_size = 100 /\n"
                        "&plan nodes = 1, 16, 128, ranks_per_node = 8, zero_stages = 1, 3, offload = 'NONE', 'nvme'"
                        ", machine = 'm.nml' /\n");
  EXPECT_EQ(c.plan.nodes, (std::vector<int>{1, 16, 128}));
  EXPECT_EQ(c.plan.ranks_per_node, (std::vector<int>{8}));
  EXPECT_EQ(c.plan.zero_stages, (std::vector<int>{1, 3}));
  EXPECT_EQ(c.plan.offload, (std::vector<std::string>{"none", "nvme"}));
  const Config d = deck("&run task = 'plan' /\n&model vocab_size = 100 /\n&plan calibrate = T /\n");
  EXPECT_EQ(d.plan.zero_stages, (std::vector<int>{0, 1, 2, 3}));
  EXPECT_EQ(d.plan.offload, (std::vector<std::string>{"none"}));
  EXPECT_NE(input_error("&plan zero_stages = 0, 1, 2, 3, 3 /").find("expects 1 to 4 integers, got 5 values"),
            std::string::npos);
  EXPECT_NE(input_error("&plan zero_stages = 4 /").find("'plan%zero_stages' = 4 is out of range"), std::string::npos);
  EXPECT_NE(input_error("&plan offload = 'gpu' /").find("is not one of 'none', 'cpu', 'nvme'"), std::string::npos);
  EXPECT_NE(input_error("&run task = 'plan' /\n&model vocab_size = 10 /").find("needs 'plan%machine'"),
            std::string::npos);
  EXPECT_NE(input_error("&run task = 'plan' /\n&plan calibrate = T, params = 1e9 /").find("needs 'plan%layers'"),
            std::string::npos);
  EXPECT_NE(input_error("&run task = 'plan' /\n&plan calibrate = T /").find("'model%vocab_size' = 0 must be > 0"),
            std::string::npos);
  const Deck o = Deck::from_text("&run task = 'plan' /\n&model vocab_size = 9 /\n&plan calibrate = T /\n", "x",
                                 {"plan%nodes=2,4"});
  EXPECT_EQ(o.get_ints("plan", "nodes"), (std::vector<long long>{2, 4}));
}

// GPT-3 175B on 128 nodes of 8 H200s: stage 0 (16 Psi = 2.8 TB per GPU) cannot fit, stage 3
// (16 Psi / 1024 = 2.7 GB of model states) does; the fastest fitting layout comes first.
TEST(PlanLayouts, GptThreeOnAThousandH200s) {
  const Machine mc = read_machine(TH_TEST_DIR "/../inputs/machines/h200_8gpu_ib.nml");
  const Config cfg = make_config(Deck::from_file(TH_TEST_DIR "/../inputs/plan_gpt3_175b.nml"));
  const PlanModel m = plan_model(cfg);
  const PlanBatch b = plan_batch(cfg, m);
  std::vector<std::string> skipped;
  const std::vector<LayoutPlan> plans =
      plan_layouts(m, b, zero_knobs(cfg), mc, {128}, {8}, {0, 1, 2, 3}, {"none", "cpu"}, &skipped);
  ASSERT_FALSE(plans.empty());
  EXPECT_TRUE(plans.front().fits);
  for (std::size_t i = 1; i < plans.size(); ++i)
    if (plans[i].fits) EXPECT_LE(plans[i].time.tokens_per_s, plans[i - 1].time.tokens_per_s);
  for (const LayoutPlan& p : plans) {
    if (p.layout.stage == 0) {
      EXPECT_FALSE(p.fits);
      EXPECT_GT(p.shortfall, 2.0e12);  // 2.8 TB of model states against 141 GB
    }
    // Our stage 3: bf16 partition 2, fp32 gradient partition 4, master + moments 12 bytes per
    // owned element (18 Psi / N; the paper's 16 Psi / N keeps an fp16 gradient partition), plus
    // 2 MiB pages the gathered units share and the positional table.
    if (p.layout.stage == 3 && p.layout.optimizer == Placement::None) {
      const double states = p.memory.params + p.memory.grads + p.memory.optimizer;
      EXPECT_GT(states, 18 * 175e9 / 1024);
      EXPECT_LT(states, 1.15 * 18 * 175e9 / 1024);
    }
  }
  EXPECT_EQ(skipped.size(), 1u);  // stage 0 with offload
}

#pragma once
// The tasks on a trained model (run%task = 'evaluate', 'translate', 'generate'). Each takes the
// validated config and the world communicator, like the training tasks (th/train/tasks.hpp).
#include "th/config/config.hpp"
#include "th/parallel/comm.hpp"

namespace th {

void run_evaluate(const Config& cfg, Comm& comm);     // src/eval/tasks.cpp
void run_translate(const Config& cfg, Comm& comm);    // src/eval/tasks.cpp
void run_evaluate_lm(const Config& cfg, Comm& comm);  // src/eval/lm_evaluate.cpp (data%packing = 'concat')
void run_generate(const Config& cfg, Comm& comm);     // src/eval/generate.cpp

}  // namespace th

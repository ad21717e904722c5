#pragma once
// The ModelSpec a deck describes (th/config/config.hpp -> th/model/transformer.hpp). Every task
// builds its model from this one function, so train, evaluate, bench and plan agree on the shape.
#include "th/config/config.hpp"
#include "th/model/transformer.hpp"

namespace th {

// vocab_size: the dataset's (the tokenizer's) for real data, model%vocab_size for synthetic data.
ModelSpec model_spec(const Config& cfg, int vocab_size);

// The backend of the run (run%backend, th/backend/backend.hpp): every task builds its model on it.
// 'cuda' and 'emulated' throw th::InputError (not available for training in this build).
Backend& run_backend(const Config& cfg);

}  // namespace th

#!/usr/bin/python3
"""Independent PyTorch reference for the Torch-Handle Transformer (float64).

Usage:
    /usr/bin/python3 tests/torch/reference.py CASE.h5 OUT.h5
    /usr/bin/python3 tests/torch/reference.py --self-test

CASE.h5 is written by the C++ test (config attributes, /params/<name>, /batch/*).
OUT.h5 receives /logits, /loss, /grads/<name>, /params_after/<name>, /loss_after.
See tests/torch/README.md for the layout.  The model is written functionally with
torch ops so that every parameter maps 1:1 by name; nothing uses nn.Transformer
(except the --self-test, which checks this file against it).

Exit status: 0 on success, 1 on an inconsistent case (message on stderr starting
with "reference.py: error:"), 2 on bad usage, 3 if the self-test fails.
"""

import math
import os
import subprocess
import sys
import tempfile
from collections import OrderedDict

import numpy as np
import torch
import torch.nn.functional as F

try:
    import h5py
except ImportError:  # pragma: no cover
    h5py = None

DTYPE = torch.float64
LN_EPS = 1e-5


class CaseError(Exception):
    """The case file is inconsistent (missing/unused parameter, bad shape, ...)."""


# ----------------------------------------------------------------------------
# Configuration
# ----------------------------------------------------------------------------

INT_KEYS = ["d_model", "n_heads", "d_ff", "n_encoder_layers", "n_decoder_layers",
            "vocab_size", "tie_embeddings", "max_len", "pad_id", "adam_steps"]
REAL_KEYS = ["label_smoothing", "lr", "beta1", "beta2", "eps", "weight_decay"]
# Optional integer attributes and their defaults: the document mask of packed language-model
# blocks (decoder-only): a query sees only keys from the last EOS at or before it (EOS opens the
# next document), so attention never crosses a document boundary inside a block.
OPT_INT_KEYS = {"document_mask": 0, "eos_id": 3}
# Optional string attributes: their allowed values, the first one the default. positions =
# 'learned': the positional table is the parameter pos_embed/weight [max_len, D] (shared by the
# encoder and decoder inputs) instead of the sinusoidal table.
OPT_STR_KEYS = {"positions": ("sinusoidal", "learned"),
                # "bf16": PyTorch's CPU mixed precision instead of the float64 reference
                "autocast": ("none", "bf16")}
STR_KEYS = {"arch": ("encoder-decoder", "decoder-only"),
            "norm": ("post", "pre"),
            "activation": ("relu", "gelu")}


def _scalar(name, v):
    """Unwrap an HDF5 attribute into a Python scalar (0-d or 1-element arrays ok)."""
    if isinstance(v, np.ndarray):
        if v.size != 1:
            raise CaseError(f"attribute '{name}' must be a scalar, got shape {v.shape}")
        v = v.reshape(()).item() if v.dtype.kind != "O" else v.reshape(-1)[0]
    if isinstance(v, np.generic):
        v = v.item()
    return v


def _as_str(name, v):
    v = _scalar(name, v)
    if isinstance(v, (bytes, bytearray)):
        v = bytes(v).decode("utf-8")
    if not isinstance(v, str):
        raise CaseError(f"attribute '{name}' must be a string, got {type(v).__name__}")
    return v.rstrip("\x00").strip()


def _as_int(name, v):
    v = _scalar(name, v)
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, int):
        return v
    if isinstance(v, float) and v.is_integer():
        return int(v)
    raise CaseError(f"attribute '{name}' must be an integer, got {v!r}")


def _as_real(name, v):
    v = _scalar(name, v)
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    raise CaseError(f"attribute '{name}' must be a real number, got {v!r}")


def parse_config(attrs):
    """attrs: mapping name -> raw attribute value.  Returns a validated dict."""
    cfg = {}
    missing = [k for k in list(STR_KEYS) + INT_KEYS + REAL_KEYS if k not in attrs]
    if missing:
        raise CaseError(f"missing root attribute(s): {', '.join(missing)}")
    for k, allowed in STR_KEYS.items():
        s = _as_str(k, attrs[k])
        if s not in allowed:
            raise CaseError(f"attribute '{k}' = {s!r}, expected one of {allowed}")
        cfg[k] = s
    for k in INT_KEYS:
        cfg[k] = _as_int(k, attrs[k])
    for k in REAL_KEYS:
        cfg[k] = _as_real(k, attrs[k])
    for k, default in OPT_INT_KEYS.items():
        cfg[k] = _as_int(k, attrs[k]) if k in attrs else default
    for k, allowed in OPT_STR_KEYS.items():
        cfg[k] = _as_str(k, attrs[k]) if k in attrs else allowed[0]
        if cfg[k] not in allowed:
            raise CaseError(f"attribute '{k}' = {cfg[k]!r}, expected one of {allowed}")
    validate_config(cfg)
    return cfg


def validate_config(cfg):
    D, H = cfg["d_model"], cfg["n_heads"]
    if D <= 0 or H <= 0 or D % H != 0:
        raise CaseError(f"d_model={D} must be a positive multiple of n_heads={H}")
    if cfg["d_ff"] <= 0:
        raise CaseError(f"d_ff={cfg['d_ff']} must be positive")
    if cfg["vocab_size"] <= 0:
        raise CaseError(f"vocab_size={cfg['vocab_size']} must be positive")
    if not 0 <= cfg["pad_id"] < cfg["vocab_size"]:
        raise CaseError(f"pad_id={cfg['pad_id']} outside [0, vocab_size={cfg['vocab_size']})")
    if cfg["tie_embeddings"] not in (0, 1):
        raise CaseError(f"tie_embeddings={cfg['tie_embeddings']} must be 0 or 1")
    if cfg["max_len"] <= 0:
        raise CaseError(f"max_len={cfg['max_len']} must be positive")
    if cfg["n_decoder_layers"] < 0 or cfg["n_encoder_layers"] < 0:
        raise CaseError("layer counts must be non-negative")
    if cfg["adam_steps"] < 0:
        raise CaseError(f"adam_steps={cfg['adam_steps']} must be >= 0")
    if not 0.0 <= cfg["label_smoothing"] <= 1.0:
        raise CaseError(f"label_smoothing={cfg['label_smoothing']} outside [0, 1]")
    if cfg.get("document_mask", 0) not in (0, 1):
        raise CaseError(f"document_mask={cfg['document_mask']} must be 0 or 1")
    if cfg.get("document_mask", 0) and cfg["arch"] != "decoder-only":
        raise CaseError("document_mask=1 needs arch='decoder-only' (packed language-model blocks)")


# ----------------------------------------------------------------------------
# Parameter naming
# ----------------------------------------------------------------------------

def _attn_params(prefix, D):
    out = OrderedDict()
    for p in ("q_proj", "k_proj", "v_proj", "out_proj"):
        out[f"{prefix}/{p}/weight"] = (D, D)
        out[f"{prefix}/{p}/bias"] = (D,)
    return out


def _norm_params(prefix, D):
    return OrderedDict([(f"{prefix}/weight", (D,)), (f"{prefix}/bias", (D,))])


def _ffn_params(prefix, D, Fd):
    return OrderedDict([(f"{prefix}/fc1/weight", (Fd, D)), (f"{prefix}/fc1/bias", (Fd,)),
                        (f"{prefix}/fc2/weight", (D, Fd)), (f"{prefix}/fc2/bias", (D,))])


def embedding_names(cfg):
    """(source embedding, target embedding, output projection) parameter names."""
    if cfg["tie_embeddings"]:
        return ("embed/weight",) * 3
    src = "encoder/embed/weight" if cfg["arch"] == "encoder-decoder" else None
    return (src, "decoder/embed/weight", "output/weight")


def learned_positions(cfg):
    return cfg.get("positions", "sinusoidal") == "learned"


def expected_params(cfg):
    """Ordered name -> shape of every parameter the model uses."""
    D, Fd, V = cfg["d_model"], cfg["d_ff"], cfg["vocab_size"]
    encdec = cfg["arch"] == "encoder-decoder"
    pre = cfg["norm"] == "pre"
    out = OrderedDict()
    for n in embedding_names(cfg):
        if n is not None and n not in out:
            out[n] = (V, D)
    if learned_positions(cfg):
        out["pos_embed/weight"] = (cfg["max_len"], D)
    if encdec:
        for i in range(cfg["n_encoder_layers"]):
            p = f"encoder/layer_{i}"
            out.update(_attn_params(f"{p}/self_attn", D))
            out.update(_norm_params(f"{p}/norm1", D))
            out.update(_ffn_params(f"{p}/ffn", D, Fd))
            out.update(_norm_params(f"{p}/norm2", D))
        if pre:
            out.update(_norm_params("encoder/final_norm", D))
    for i in range(cfg["n_decoder_layers"]):
        p = f"decoder/layer_{i}"
        out.update(_attn_params(f"{p}/self_attn", D))
        out.update(_norm_params(f"{p}/norm1", D))
        if encdec:
            out.update(_attn_params(f"{p}/cross_attn", D))
            out.update(_norm_params(f"{p}/norm2", D))
            out.update(_ffn_params(f"{p}/ffn", D, Fd))
            out.update(_norm_params(f"{p}/norm3", D))
        else:
            out.update(_ffn_params(f"{p}/ffn", D, Fd))
            out.update(_norm_params(f"{p}/norm2", D))
    if pre:
        out.update(_norm_params("decoder/final_norm", D))
    return out


def check_params(cfg, params):
    """params: name -> np.ndarray.  Raises CaseError on missing/unused/mis-shaped."""
    exp = expected_params(cfg)
    missing = [n for n in exp if n not in params]
    unused = sorted(n for n in params if n not in exp)
    errs = []
    if missing:
        errs.append("missing parameter(s): " + ", ".join(missing))
    if unused:
        errs.append("unused parameter(s): " + ", ".join(unused))
    for n, shape in exp.items():
        if n in params and tuple(params[n].shape) != tuple(shape):
            errs.append(f"shape mismatch for '{n}': got {tuple(params[n].shape)}, expected {tuple(shape)}")
    for n, a in params.items():
        if n in exp and a.dtype.kind != "f":
            errs.append(f"parameter '{n}' has non-float dtype {a.dtype}")
        elif n in exp and not np.all(np.isfinite(a)):
            errs.append(f"parameter '{n}' has non-finite values")
    if errs:
        raise CaseError("; ".join(errs))


def check_batch(cfg, batch):
    """batch: name -> np.ndarray (int).  Raises CaseError on inconsistencies."""
    encdec = cfg["arch"] == "encoder-decoder"
    need = ["tgt_in", "tgt_out", "tgt_len"] + (["src", "src_len"] if encdec else [])
    missing = [k for k in need if k not in batch]
    extra = sorted(k for k in batch if k not in need)
    if missing:
        raise CaseError("missing batch dataset(s): " + ", ".join("/batch/" + k for k in missing))
    if extra:
        raise CaseError(f"unexpected batch dataset(s) for arch={cfg['arch']}: "
                        + ", ".join("/batch/" + k for k in extra))
    for k in need:
        if batch[k].dtype.kind not in "iu":
            raise CaseError(f"/batch/{k} must be integer, got {batch[k].dtype}")
    V, pad, L = cfg["vocab_size"], cfg["pad_id"], cfg["max_len"]

    def seq(tok_names, len_name):
        toks = [batch[k] for k in tok_names]
        lens = batch[len_name]
        if toks[0].ndim != 2:
            raise CaseError(f"/batch/{tok_names[0]} must be 2-D [B, len], got shape {toks[0].shape}")
        B, T = toks[0].shape
        for k, t in zip(tok_names, toks):
            if t.shape != (B, T):
                raise CaseError(f"/batch/{k} shape {t.shape} != {(B, T)}")
        if lens.shape != (B,):
            raise CaseError(f"/batch/{len_name} shape {lens.shape} != {(B,)}")
        if B == 0 or T == 0:
            raise CaseError(f"/batch/{tok_names[0]} is empty: shape {(B, T)}")
        if T > L:
            raise CaseError(f"/batch/{tok_names[0]} length {T} exceeds max_len={L}")
        if np.any(lens < 1) or np.any(lens > T):
            raise CaseError(f"/batch/{len_name} = {lens.tolist()} must lie in [1, {T}]")
        pos = np.arange(T)[None, :]
        beyond = pos >= lens[:, None]
        for k, t in zip(tok_names, toks):
            if np.any(t < 0) or np.any(t >= V):
                raise CaseError(f"/batch/{k} has token ids outside [0, vocab_size={V})")
            if np.any(t[beyond] != pad):
                raise CaseError(f"/batch/{k} holds non-pad tokens at or beyond {len_name}")
        return B

    Bt = seq(["tgt_in", "tgt_out"], "tgt_len")
    if encdec:
        Bs = seq(["src"], "src_len")
        if Bs != Bt:
            raise CaseError(f"batch size mismatch: src has {Bs} rows, tgt has {Bt}")
    if not np.any(batch["tgt_out"] != pad):
        raise CaseError("/batch/tgt_out has no non-pad tokens: the mean loss is undefined")


# ----------------------------------------------------------------------------
# The model (functional, float64)
# ----------------------------------------------------------------------------

def positional_encoding(max_len, D):
    """PE[pos, 2i] = sin(pos / 10000^(2i/D)), PE[pos, 2i+1] = cos(same)."""
    pos = torch.arange(max_len, dtype=DTYPE)[:, None]
    j = torch.arange(D)
    two_i = (j - (j % 2)).to(DTYPE)
    angle = pos / torch.pow(torch.tensor(10000.0, dtype=DTYPE), two_i / D)[None, :]
    return torch.where((j % 2 == 0)[None, :], torch.sin(angle), torch.cos(angle))


def linear(P, prefix, x):
    return torch.matmul(x, P[prefix + "/weight"].t()) + P[prefix + "/bias"]


def layer_norm(P, prefix, x):
    return F.layer_norm(x, (x.shape[-1],), P[prefix + "/weight"], P[prefix + "/bias"], LN_EPS)


def document_starts(tokens, eos_id):
    """[B,T]: for each position the last position <= it holding EOS (0 if none)."""
    B, T = tokens.shape
    pos = torch.arange(T).expand(B, T)
    marks = torch.where(tokens == eos_id, pos, torch.zeros_like(pos))
    return torch.cummax(marks, dim=1).values


def attention(P, prefix, xq, xkv, key_len, causal, H, key_begin=None):
    """Multi-head attention; keys at position >= key_len[b] (and > query if causal, and < key_begin[b, q]
    with a document mask) masked."""
    B, Tq, D = xq.shape
    Tk = xkv.shape[1]
    Dh = D // H
    q = linear(P, prefix + "/q_proj", xq).view(B, Tq, H, Dh).transpose(1, 2)   # [B,H,Tq,Dh]
    k = linear(P, prefix + "/k_proj", xkv).view(B, Tk, H, Dh).transpose(1, 2)  # [B,H,Tk,Dh]
    v = linear(P, prefix + "/v_proj", xkv).view(B, Tk, H, Dh).transpose(1, 2)
    scores = torch.matmul(q, k.transpose(-2, -1)) / math.sqrt(Dh)               # [B,H,Tq,Tk]
    kpos = torch.arange(Tk)
    mask = (kpos[None, :] >= key_len[:, None])[:, None, None, :]               # [B,1,1,Tk]
    if causal:
        qpos = torch.arange(Tq)
        mask = mask | (kpos[None, :] > qpos[:, None])[None, None, :, :]         # [B,1,Tq,Tk]
    if key_begin is not None:
        mask = mask | (kpos[None, None, :] < key_begin[:, :, None])[:, None, :, :]
    scores = scores.masked_fill(mask, float("-inf"))
    probs = torch.softmax(scores, dim=-1)
    ctx = torch.matmul(probs, v).transpose(1, 2).reshape(B, Tq, D)
    return linear(P, prefix + "/out_proj", ctx)


def ffn(P, prefix, x, activation):
    h = linear(P, prefix + "/fc1", x)
    h = torch.relu(h) if activation == "relu" else F.gelu(h)  # exact erf gelu
    return linear(P, prefix + "/fc2", h)


def embed(P, name, tokens, pe, D):
    return P[name][tokens] * math.sqrt(D) + pe[: tokens.shape[1]][None, :, :]


def encoder(P, cfg, src, src_len, pe):
    D, H, act = cfg["d_model"], cfg["n_heads"], cfg["activation"]
    pre = cfg["norm"] == "pre"
    x = embed(P, embedding_names(cfg)[0], src, pe, D)
    for i in range(cfg["n_encoder_layers"]):
        p = f"encoder/layer_{i}"
        if pre:
            y = layer_norm(P, p + "/norm1", x)
            x = x + attention(P, p + "/self_attn", y, y, src_len, False, H)
            x = x + ffn(P, p + "/ffn", layer_norm(P, p + "/norm2", x), act)
        else:
            x = layer_norm(P, p + "/norm1", x + attention(P, p + "/self_attn", x, x, src_len, False, H))
            x = layer_norm(P, p + "/norm2", x + ffn(P, p + "/ffn", x, act))
    if pre:
        x = layer_norm(P, "encoder/final_norm", x)
    return x


def decoder(P, cfg, tgt_in, tgt_len, memory, src_len, pe):
    D, H, act = cfg["d_model"], cfg["n_heads"], cfg["activation"]
    pre = cfg["norm"] == "pre"
    encdec = memory is not None
    x = embed(P, embedding_names(cfg)[1], tgt_in, pe, D)
    kb = document_starts(tgt_in, cfg["eos_id"]) if cfg.get("document_mask", 0) else None
    for i in range(cfg["n_decoder_layers"]):
        p = f"decoder/layer_{i}"
        ffn_norm = p + ("/norm3" if encdec else "/norm2")
        if pre:
            y = layer_norm(P, p + "/norm1", x)
            x = x + attention(P, p + "/self_attn", y, y, tgt_len, True, H, kb)
            if encdec:
                y = layer_norm(P, p + "/norm2", x)
                x = x + attention(P, p + "/cross_attn", y, memory, src_len, False, H)
            x = x + ffn(P, p + "/ffn", layer_norm(P, ffn_norm, x), act)
        else:
            x = layer_norm(P, p + "/norm1", x + attention(P, p + "/self_attn", x, x, tgt_len, True, H, kb))
            if encdec:
                x = layer_norm(P, p + "/norm2",
                               x + attention(P, p + "/cross_attn", x, memory, src_len, False, H))
            x = layer_norm(P, ffn_norm, x + ffn(P, p + "/ffn", x, act))
    if pre:
        x = layer_norm(P, "decoder/final_norm", x)
    return x


def forward_logits(P, cfg, tb):
    """P: name -> float64 tensor; tb: batch as int64 tensors.  Returns logits [B,T,V]."""
    if learned_positions(cfg):
        pe = P["pos_embed/weight"]  # one trained table for both sides
    else:
        pe = positional_encoding(cfg["max_len"], cfg["d_model"])
    memory, src_len = None, None
    if cfg["arch"] == "encoder-decoder":
        src_len = tb["src_len"]
        memory = encoder(P, cfg, tb["src"], src_len, pe)
    h = decoder(P, cfg, tb["tgt_in"], tb["tgt_len"], memory, src_len, pe)
    return torch.matmul(h, P[embedding_names(cfg)[2]].t())


def compute_loss(logits, tgt_out, cfg):
    V = logits.shape[-1]
    return F.cross_entropy(logits.reshape(-1, V), tgt_out.reshape(-1), ignore_index=cfg["pad_id"],
                           label_smoothing=cfg["label_smoothing"], reduction="mean")


def to_torch_batch(batch):
    return {k: torch.as_tensor(np.asarray(v, dtype=np.int64)) for k, v in batch.items()}


def run_case(cfg, params, batch):
    """Full pipeline.  params: name -> np array; batch: name -> np int array.

    Returns dict with logits, loss, grads (name -> np), params_after, loss_after.
    """
    validate_config(cfg)
    check_params(cfg, params)
    check_batch(cfg, batch)
    if cfg.get("autocast", "none") == "bf16":
        return run_case_autocast(cfg, params, batch)
    names = list(expected_params(cfg))
    P = OrderedDict((n, torch.tensor(np.asarray(params[n], dtype=np.float64), dtype=DTYPE,
                                     requires_grad=True)) for n in names)
    tb = to_torch_batch(batch)
    opt = torch.optim.AdamW(list(P.values()), lr=cfg["lr"], betas=(cfg["beta1"], cfg["beta2"]),
                            eps=cfg["eps"], weight_decay=cfg["weight_decay"])

    logits = forward_logits(P, cfg, tb)
    loss = compute_loss(logits, tb["tgt_out"], cfg)
    if not torch.isfinite(loss):
        raise CaseError(f"loss is not finite ({loss.item()})")
    opt.zero_grad()
    loss.backward()
    out = {"logits": logits.detach().numpy().copy(), "loss": float(loss.item()),
           "grads": OrderedDict((n, P[n].grad.detach().numpy().copy()) for n in names)}
    for step in range(cfg["adam_steps"]):
        if step > 0:
            opt.zero_grad()
            l2 = compute_loss(forward_logits(P, cfg, tb), tb["tgt_out"], cfg)
            l2.backward()
        opt.step()
    with torch.no_grad():
        loss_after = compute_loss(forward_logits(P, cfg, tb), tb["tgt_out"], cfg)
    out["params_after"] = OrderedDict((n, P[n].detach().numpy().copy()) for n in names)
    out["loss_after"] = float(loss_after.item())
    return out


def run_case_autocast(cfg, params, batch):
    """PyTorch's CPU mixed precision, as a user runs it: float32 weights, the forward under
    torch.autocast('cpu', dtype=torch.bfloat16) (matmuls and linears in bf16 with fp32
    accumulation, the ops on autocast's fp32 list in fp32), backward through it. Returns logits,
    loss and grads; no optimizer steps (params_after = the initial values)."""
    global DTYPE
    saved = DTYPE
    DTYPE = torch.float32
    try:
        names = list(expected_params(cfg))
        P = OrderedDict((n, torch.tensor(np.asarray(params[n], dtype=np.float32), dtype=torch.float32,
                                         requires_grad=True)) for n in names)
        tb = to_torch_batch(batch)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = forward_logits(P, cfg, tb)
            loss = compute_loss(logits.float(), tb["tgt_out"], cfg)
        if not torch.isfinite(loss):
            raise CaseError(f"loss is not finite ({loss.item()})")
        loss.backward()
    finally:
        DTYPE = saved
    return {"logits": logits.detach().float().numpy().copy(), "loss": float(loss.item()),
            "grads": OrderedDict((n, P[n].grad.detach().numpy().copy()) for n in names),
            "params_after": OrderedDict((n, np.asarray(params[n])) for n in names),
            "loss_after": float(loss.item())}


# ----------------------------------------------------------------------------
# HDF5 I/O
# ----------------------------------------------------------------------------

def _collect_datasets(group):
    out = {}

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset):
            out[name] = obj[()]
    group.visititems(visit)
    return out


def read_case(path):
    if h5py is None:
        raise CaseError("h5py is not available in this interpreter (use /usr/bin/python3)")
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise CaseError(f"cannot open case file '{path}': {e}")
    with f:
        cfg = parse_config(dict(f.attrs))
        if "params" not in f or not isinstance(f["params"], h5py.Group):
            raise CaseError("missing group /params")
        if "batch" not in f or not isinstance(f["batch"], h5py.Group):
            raise CaseError("missing group /batch")
        params = {n: np.asarray(a) for n, a in _collect_datasets(f["params"]).items()}
        batch = {n: np.asarray(a) for n, a in _collect_datasets(f["batch"]).items()}
    return cfg, params, batch


def write_out(path, out):
    with h5py.File(path, "w") as f:
        f.create_dataset("logits", data=np.asarray(out["logits"], dtype=np.float64))
        f.create_dataset("loss", data=np.float64(out["loss"]))
        for n, g in out["grads"].items():
            f.create_dataset("grads/" + n, data=np.asarray(g, dtype=np.float64))
        for n, p in out["params_after"].items():
            f.create_dataset("params_after/" + n, data=np.asarray(p, dtype=np.float64))
        f.create_dataset("loss_after", data=np.float64(out["loss_after"]))


def main_case(case_path, out_path):
    cfg, params, batch = read_case(case_path)
    out = run_case(cfg, params, batch)
    write_out(out_path, out)
    print(f"reference.py: {cfg['arch']}/{cfg['norm']}/{cfg['activation']}"
          f"/{'tied' if cfg['tie_embeddings'] else 'untied'}: loss={out['loss']:.17g} "
          f"loss_after={out['loss_after']:.17g} ({cfg['adam_steps']} AdamW steps) -> {out_path}")


# ----------------------------------------------------------------------------
# Self-test
# ----------------------------------------------------------------------------

def make_random_case(arch, norm, activation, tie, seed, label_smoothing=0.1, adam_steps=3,
                     D=8, H=2, Fd=12, n_enc=2, n_dec=2, V=11, B=3, S=5, T=6, max_len=16,
                     src_len=(5, 3, 1), tgt_len=(6, 4, 2), pad_id=0):
    rng = np.random.default_rng(seed)
    cfg = {"arch": arch, "norm": norm, "activation": activation, "d_model": D, "n_heads": H,
           "d_ff": Fd, "n_encoder_layers": n_enc if arch == "encoder-decoder" else 0,
           "n_decoder_layers": n_dec, "vocab_size": V, "tie_embeddings": int(tie),
           "max_len": max_len, "pad_id": pad_id, "label_smoothing": label_smoothing, "lr": 1e-2,
           "beta1": 0.9, "beta2": 0.98, "eps": 1e-8, "weight_decay": 0.01,
           "adam_steps": adam_steps}
    params = {}
    for n, shape in expected_params(cfg).items():
        if n.endswith("embed/weight") or n == "output/weight":
            a = rng.normal(0.0, 0.5, shape) / math.sqrt(D)
        elif "norm" in n and n.endswith("/weight"):
            a = 1.0 + 0.2 * rng.normal(size=shape)
        elif n.endswith("/bias"):
            a = 0.1 * rng.normal(size=shape)
        else:
            a = rng.normal(0.0, 1.0, shape) / math.sqrt(shape[1])
        params[n] = a.astype(np.float32).astype(np.float64)  # exact float32 values

    def toks(lens, L):
        t = rng.integers(1, V, size=(B, L)).astype(np.int32)  # non-pad in valid region
        for b, l in enumerate(lens):
            t[b, l:] = pad_id
        return t
    batch = {"tgt_in": toks(tgt_len, T), "tgt_out": toks(tgt_len, T),
             "tgt_len": np.asarray(tgt_len, dtype=np.int32)}
    if arch == "encoder-decoder":
        batch["src"] = toks(src_len, S)
        batch["src_len"] = np.asarray(src_len, dtype=np.int32)
    return cfg, params, batch


ALL_CONFIGS = [(a, n, act, tie) for a in ("encoder-decoder", "decoder-only")
               for n in ("post", "pre") for act in ("relu", "gelu") for tie in (True, False)]


def _cfg_name(a, n, act, tie):
    return f"{a:15s} {n:4s} {act:4s} {'tied' if tie else 'untied'}"


class _Checker:
    def __init__(self):
        self.failures = 0

    def check(self, ok, msg):
        print(("  ok    " if ok else "  FAIL  ") + msg)
        if not ok:
            self.failures += 1


def _loss_fn(cfg, tb):
    def f(P):
        return compute_loss(forward_logits(P, cfg, tb), tb["tgt_out"], cfg)
    return f


def selftest_finite_differences(ck):
    print("[1] gradients vs central finite differences (float64, h=1e-6) + torch.autograd.gradcheck")
    rng = np.random.default_rng(1234)
    for ci, (a, n, act, tie) in enumerate(ALL_CONFIGS):
        cfg, params, batch = make_random_case(a, n, act, tie, seed=100 + ci, adam_steps=0)
        out = run_case(cfg, params, batch)
        tb = to_torch_batch(batch)
        f = _loss_fn(cfg, tb)
        base = {k: torch.tensor(v, dtype=DTYPE) for k, v in params.items()}
        names = list(expected_params(cfg))
        # Always cover embeddings/output, plus a few random other parameters.
        emb = [x for x in dict.fromkeys(embedding_names(cfg)) if x is not None]
        others = [x for x in names if x not in emb]
        chosen = emb + list(rng.choice(others, size=5, replace=False))
        h = 1e-6
        worst = 0.0
        nchk = 0
        fd_ok = True
        for name in chosen:
            shape = params[name].shape
            for _ in range(3):
                idx = tuple(int(rng.integers(0, s)) for s in shape)
                if name in emb:  # pick a token row that actually appears in the batch
                    used = np.unique(np.concatenate([v.ravel() for k, v in batch.items()
                                                     if not k.endswith("_len")]))
                    used = used[used != cfg["pad_id"]]
                    idx = (int(rng.choice(used)),) + idx[1:]
                with torch.no_grad():
                    Pp = dict(base); Pp[name] = base[name].clone(); Pp[name][idx] += h
                    Pm = dict(base); Pm[name] = base[name].clone(); Pm[name][idx] -= h
                    fd = (f(Pp).item() - f(Pm).item()) / (2 * h)
                g = out["grads"][name][idx]
                worst = max(worst, abs(fd - g) / max(abs(g), 1e-3))
                nchk += 1
                if not abs(fd - g) <= 1e-7 + 1e-6 * abs(g):
                    fd_ok = False
                    print(f"        {name}{idx}: fd={fd:.12g} grad={g:.12g}")
        # torch.autograd.gradcheck on two whole small parameters (all entries).
        gc_names = [names[-1], [x for x in names if x.endswith("q_proj/bias")][0]]
        gc_ok = True
        for name in gc_names:
            def g_of(t, name=name):
                P = dict(base); P[name] = t
                return f(P)
            gc_ok &= torch.autograd.gradcheck(g_of, (base[name].clone().requires_grad_(True),),
                                              eps=1e-6, atol=1e-7, rtol=1e-6, raise_exception=False)
        ck.check(gc_ok and fd_ok,
                 f"{_cfg_name(a, n, act, tie)}: {nchk} FD entries over {len(chosen)} params, "
                 f"worst rel err {worst:.2e}; gradcheck({', '.join(gc_names)}) {'passed' if gc_ok else 'FAILED'}")


def _build_nn(cfg, P):
    """Build torch.nn modules equivalent to cfg, weights copied from P (float64 tensors)."""
    nn = torch.nn
    D, H, Fd, act = cfg["d_model"], cfg["n_heads"], cfg["d_ff"], cfg["activation"]
    pre = cfg["norm"] == "pre"
    kw = dict(dropout=0.0, activation=act, batch_first=True, norm_first=pre, dtype=DTYPE)

    def cp_attn(mha, prefix):
        mha.in_proj_weight.copy_(torch.cat([P[f"{prefix}/{x}_proj/weight"] for x in "qkv"], 0))
        mha.in_proj_bias.copy_(torch.cat([P[f"{prefix}/{x}_proj/bias"] for x in "qkv"], 0))
        mha.out_proj.weight.copy_(P[f"{prefix}/out_proj/weight"])
        mha.out_proj.bias.copy_(P[f"{prefix}/out_proj/bias"])

    def cp_lin(lin, prefix):
        lin.weight.copy_(P[prefix + "/weight"]); lin.bias.copy_(P[prefix + "/bias"])

    cp_norm = cp_lin
    mods = {}
    with torch.no_grad():
        if cfg["arch"] == "encoder-decoder":
            if pre:
                # nn.Transformer's always-present final norms are exactly our final_norms.
                tr = nn.Transformer(D, H, cfg["n_encoder_layers"], cfg["n_decoder_layers"], Fd, **kw)
                enc, dec = tr.encoder, tr.decoder
                cp_norm(enc.norm, "encoder/final_norm"); cp_norm(dec.norm, "decoder/final_norm")
                mods["transformer"] = tr
            else:
                enc = nn.TransformerEncoder(nn.TransformerEncoderLayer(D, H, Fd, **kw),
                                            cfg["n_encoder_layers"], norm=None, enable_nested_tensor=False)
                dec = nn.TransformerDecoder(nn.TransformerDecoderLayer(D, H, Fd, **kw),
                                            cfg["n_decoder_layers"], norm=None)
            for i, L in enumerate(enc.layers):
                p = f"encoder/layer_{i}"
                cp_attn(L.self_attn, p + "/self_attn"); cp_norm(L.norm1, p + "/norm1")
                cp_lin(L.linear1, p + "/ffn/fc1"); cp_lin(L.linear2, p + "/ffn/fc2")
                cp_norm(L.norm2, p + "/norm2")
            for i, L in enumerate(dec.layers):
                p = f"decoder/layer_{i}"
                cp_attn(L.self_attn, p + "/self_attn"); cp_norm(L.norm1, p + "/norm1")
                cp_attn(L.multihead_attn, p + "/cross_attn"); cp_norm(L.norm2, p + "/norm2")
                cp_lin(L.linear1, p + "/ffn/fc1"); cp_lin(L.linear2, p + "/ffn/fc2")
                cp_norm(L.norm3, p + "/norm3")
            mods["encoder"], mods["decoder"] = enc, dec
        else:
            # Decoder-only == a causal encoder stack (self-attn, norm1, ffn, norm2).
            fn = None
            if pre:
                fn = nn.LayerNorm(D, eps=LN_EPS, dtype=DTYPE)
                cp_norm(fn, "decoder/final_norm")
            dec = nn.TransformerEncoder(nn.TransformerEncoderLayer(D, H, Fd, **kw),
                                        cfg["n_decoder_layers"], norm=fn, enable_nested_tensor=False)
            for i, L in enumerate(dec.layers):
                p = f"decoder/layer_{i}"
                cp_attn(L.self_attn, p + "/self_attn"); cp_norm(L.norm1, p + "/norm1")
                cp_lin(L.linear1, p + "/ffn/fc1"); cp_lin(L.linear2, p + "/ffn/fc2")
                cp_norm(L.norm2, p + "/norm2")
            mods["decoder"] = dec
    for m in mods.values():
        m.train()  # dropout is 0; training mode keeps torch off its fused/nested fast paths
    return mods


def _nn_grads(cfg, mods, emb_params):
    """Map nn module gradients back to our parameter names."""
    pre = cfg["norm"] == "pre"
    g = dict(emb_params)

    def attn(mha, prefix):
        D = cfg["d_model"]
        for j, x in enumerate("qkv"):
            g[f"{prefix}/{x}_proj/weight"] = mha.in_proj_weight.grad[j * D:(j + 1) * D]
            g[f"{prefix}/{x}_proj/bias"] = mha.in_proj_bias.grad[j * D:(j + 1) * D]
        g[f"{prefix}/out_proj/weight"] = mha.out_proj.weight.grad
        g[f"{prefix}/out_proj/bias"] = mha.out_proj.bias.grad

    def lin(m, prefix):
        g[prefix + "/weight"] = m.weight.grad; g[prefix + "/bias"] = m.bias.grad

    if cfg["arch"] == "encoder-decoder":
        for i, L in enumerate(mods["encoder"].layers):
            p = f"encoder/layer_{i}"
            attn(L.self_attn, p + "/self_attn"); lin(L.norm1, p + "/norm1")
            lin(L.linear1, p + "/ffn/fc1"); lin(L.linear2, p + "/ffn/fc2"); lin(L.norm2, p + "/norm2")
        for i, L in enumerate(mods["decoder"].layers):
            p = f"decoder/layer_{i}"
            attn(L.self_attn, p + "/self_attn"); lin(L.norm1, p + "/norm1")
            attn(L.multihead_attn, p + "/cross_attn"); lin(L.norm2, p + "/norm2")
            lin(L.linear1, p + "/ffn/fc1"); lin(L.linear2, p + "/ffn/fc2"); lin(L.norm3, p + "/norm3")
        if pre:
            lin(mods["encoder"].norm, "encoder/final_norm"); lin(mods["decoder"].norm, "decoder/final_norm")
    else:
        for i, L in enumerate(mods["decoder"].layers):
            p = f"decoder/layer_{i}"
            attn(L.self_attn, p + "/self_attn"); lin(L.norm1, p + "/norm1")
            lin(L.linear1, p + "/ffn/fc1"); lin(L.linear2, p + "/ffn/fc2"); lin(L.norm2, p + "/norm2")
        if pre:
            lin(mods["decoder"].norm, "decoder/final_norm")
    return g


def selftest_nn_transformer(ck):
    print("[2] logits/loss/grads vs torch.nn Transformer modules (same weights, dropout 0)")
    for ci, (a, n, act, tie) in enumerate(ALL_CONFIGS):
        cfg, params, batch = make_random_case(a, n, act, tie, seed=200 + ci, adam_steps=0)
        ours = run_case(cfg, params, batch)
        P = {k: torch.tensor(v, dtype=DTYPE) for k, v in params.items()}
        mods = _build_nn(cfg, P)
        tb = to_torch_batch(batch)
        D = cfg["d_model"]
        pe = positional_encoding(cfg["max_len"], D)
        e_src, e_tgt, e_out = embedding_names(cfg)
        E = {k: P[k].clone().requires_grad_(True) for k in dict.fromkeys(embedding_names(cfg)) if k}

        def emb(name, tok):
            return E[name][tok] * math.sqrt(D) + pe[: tok.shape[1]][None]
        T = tb["tgt_in"].shape[1]
        causal = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)  # True = masked
        tpad = torch.arange(T)[None, :] >= tb["tgt_len"][:, None]
        if a == "encoder-decoder":
            S = tb["src"].shape[1]
            spad = torch.arange(S)[None, :] >= tb["src_len"][:, None]
            xs, xt = emb(e_src, tb["src"]), emb(e_tgt, tb["tgt_in"])
            if "transformer" in mods:
                h = mods["transformer"](xs, xt, tgt_mask=causal, src_key_padding_mask=spad,
                                        tgt_key_padding_mask=tpad, memory_key_padding_mask=spad)
                which = "nn.Transformer"
            else:
                mem = mods["encoder"](xs, src_key_padding_mask=spad)
                h = mods["decoder"](xt, mem, tgt_mask=causal, tgt_key_padding_mask=tpad,
                                    memory_key_padding_mask=spad)
                which = "nn.TransformerEncoder/Decoder(norm=None)"
        else:
            h = mods["decoder"](emb(e_tgt, tb["tgt_in"]), mask=causal, src_key_padding_mask=tpad)
            which = "nn.TransformerEncoder(causal)"
        logits = torch.matmul(h, E[e_out].t())
        loss = compute_loss(logits, tb["tgt_out"], cfg)
        loss.backward()
        g = _nn_grads(cfg, mods, {k: v.grad for k, v in E.items()})
        dl = float(np.max(np.abs(logits.detach().numpy() - ours["logits"])))
        dloss = abs(loss.item() - ours["loss"])
        missing = set(ours["grads"]) ^ set(g)
        dg = max(float(np.max(np.abs(g[k].numpy() - ours["grads"][k])) /
                       max(1.0, float(np.max(np.abs(ours["grads"][k]))))) for k in ours["grads"])
        ck.check(not missing and dl < 1e-12 and dloss < 1e-13 and dg < 1e-12,
                 f"{_cfg_name(a, n, act, tie)} vs {which}: max|dlogits|={dl:.1e} "
                 f"|dloss|={dloss:.1e} max grad diff={dg:.1e} ({len(g)} params)"
                 + (f" name mismatch {sorted(missing)}" if missing else ""))


def selftest_adamw_and_loss(ck):
    print("[3] AdamW steps vs hand-written AdamW; loss vs hand-written smoothed cross-entropy")
    for ci, (a, n, act, tie) in enumerate(ALL_CONFIGS[::3] + [ALL_CONFIGS[10]]):
        cfg, params, batch = make_random_case(a, n, act, tie, seed=300 + ci, adam_steps=4)
        ours = run_case(cfg, params, batch)
        tb = to_torch_batch(batch)
        f = _loss_fn(cfg, tb)
        names = list(expected_params(cfg))
        P = {k: torch.tensor(params[k], dtype=DTYPE) for k in names}
        m = {k: torch.zeros_like(v) for k, v in P.items()}
        v2 = {k: torch.zeros_like(v) for k, v in P.items()}
        lr, b1, b2, eps, wd = cfg["lr"], cfg["beta1"], cfg["beta2"], cfg["eps"], cfg["weight_decay"]
        first_grads = None
        for t in range(1, cfg["adam_steps"] + 1):
            Pg = {k: x.clone().requires_grad_(True) for k, x in P.items()}
            grads = torch.autograd.grad(f(Pg), [Pg[k] for k in names])
            if first_grads is None:
                first_grads = dict(zip(names, grads))
            for k, gk in zip(names, grads):
                P[k] = P[k] * (1 - lr * wd)
                m[k] = b1 * m[k] + (1 - b1) * gk
                v2[k] = b2 * v2[k] + (1 - b2) * gk * gk
                mhat = m[k] / (1 - b1 ** t)
                vhat = v2[k] / (1 - b2 ** t)
                P[k] = P[k] - lr * mhat / (torch.sqrt(vhat) + eps)
        # k_proj biases have an exactly-zero true gradient (softmax is shift invariant), so their
        # computed gradient is round-off (~1e-18) that Adam amplifies to ~lr*|g|/eps: compare apart.
        kb = [k for k in names if k.endswith("k_proj/bias")]
        dp = max(float(np.max(np.abs(P[k].numpy() - ours["params_after"][k]))) for k in names if k not in kb)
        dpk = max(float(np.max(np.abs(P[k].numpy() - ours["params_after"][k]))) for k in kb)
        gk = max(float(np.max(np.abs(ours["grads"][k]))) for k in kb)
        dg = max(float(np.max(np.abs(first_grads[k].numpy() - ours["grads"][k]))) for k in names)
        with torch.no_grad():
            la = f(P).item()
        # Smoothed CE by hand: mean over non-pad of (1-e)*nll + e*mean_c(-logp_c).
        lg = torch.tensor(ours["logits"]).reshape(-1, cfg["vocab_size"])
        y = tb["tgt_out"].reshape(-1)
        keep = y != cfg["pad_id"]
        logp = torch.log_softmax(lg[keep], -1)
        e = cfg["label_smoothing"]
        ce = ((1 - e) * -logp.gather(1, y[keep][:, None])[:, 0] + e * -logp.mean(-1)).mean().item()
        ck.check(dp < 1e-14 and dpk < 1e-10 and dg == 0.0 and abs(la - ours["loss_after"]) < 1e-13
                 and abs(ce - ours["loss"]) < 1e-13,
                 f"{_cfg_name(a, n, act, tie)}: {cfg['adam_steps']} steps max|dparam|={dp:.1e} "
                 f"(k_proj/bias: {dpk:.1e}, their |grad|<={gk:.0e}), "
                 f"loss {ours['loss']:.6f} -> {ours['loss_after']:.6f} (hand {la:.6f}), "
                 f"hand CE diff {abs(ce - ours['loss']):.1e}")


def selftest_padding(ck):
    print("[4] padding independence: a padded row == the same row alone, unpadded; pad rows get no grad")
    for ci, (a, n, act, tie) in enumerate(ALL_CONFIGS):
        cfg, params, batch = make_random_case(a, n, act, tie, seed=400 + ci, adam_steps=0)
        ours = run_case(cfg, params, batch)
        worst = 0.0
        for b in range(batch["tgt_len"].shape[0]):
            lt = int(batch["tgt_len"][b])
            one = {"tgt_in": batch["tgt_in"][b:b + 1, :lt], "tgt_out": batch["tgt_out"][b:b + 1, :lt],
                   "tgt_len": batch["tgt_len"][b:b + 1]}
            if a == "encoder-decoder":
                ls = int(batch["src_len"][b])
                one["src"] = batch["src"][b:b + 1, :ls]
                one["src_len"] = batch["src_len"][b:b + 1]
            with torch.no_grad():
                lg = forward_logits({k: torch.tensor(v) for k, v in params.items()}, cfg,
                                    to_torch_batch(one)).numpy()
            worst = max(worst, float(np.max(np.abs(lg[0] - ours["logits"][b, :lt]))))
        pad_ok = True
        if not tie:  # untied input embeddings: the pad row is only ever used at masked/ignored spots
            for nm in embedding_names(cfg)[:2]:
                if nm is not None:
                    pad_ok &= bool(np.all(ours["grads"][nm][cfg["pad_id"]] == 0.0))
        ck.check(worst < 1e-12 and pad_ok,
                 f"{_cfg_name(a, n, act, tie)}: max|dlogits| padded vs alone = {worst:.1e}"
                 + ("" if tie else f", pad-row embedding grad zero: {pad_ok}"))


def _write_case(path, cfg, params, batch, str_as_bytes):
    with h5py.File(path, "w") as f:
        for k, v in cfg.items():
            if k in STR_KEYS or k in OPT_STR_KEYS:
                f.attrs[k] = np.bytes_(v.encode()) if str_as_bytes else v
            elif k in INT_KEYS or k in OPT_INT_KEYS:
                f.attrs[k] = np.int64(v)
            else:
                f.attrs[k] = np.float64(v)
        for k, v in params.items():
            f.create_dataset("params/" + k, data=np.asarray(v, dtype=np.float64))
        for k, v in batch.items():
            f.create_dataset("batch/" + k, data=np.asarray(v, dtype=np.int32))


def selftest_files(ck):
    print("[5] HDF5 round trip through the command line, and error exits")
    me = os.path.abspath(__file__)
    with tempfile.TemporaryDirectory() as d:
        for i, (a, n, act, tie) in enumerate([ALL_CONFIGS[0], ALL_CONFIGS[-1]]):
            cfg, params, batch = make_random_case(a, n, act, tie, seed=500 + i, adam_steps=2)
            case, outp = os.path.join(d, f"case{i}.h5"), os.path.join(d, f"out{i}.h5")
            _write_case(case, cfg, params, batch, str_as_bytes=(i == 0))
            r = subprocess.run([sys.executable, me, case, outp], capture_output=True, text=True)
            ok = r.returncode == 0
            if ok:
                ref = run_case(cfg, params, batch)
                with h5py.File(outp, "r") as f:
                    names = list(expected_params(cfg))
                    g = _collect_datasets(f["grads"])
                    pa = _collect_datasets(f["params_after"])
                    ok &= f["loss"].shape == () and f["loss_after"].shape == ()
                    ok &= f["logits"].shape == ref["logits"].shape and f["logits"].dtype == np.float64
                    ok &= sorted(g) == sorted(names) and sorted(pa) == sorted(names)
                    ok &= set(f.keys()) == {"logits", "loss", "grads", "params_after", "loss_after"}
                    ok &= bool(np.array_equal(f["logits"][()], ref["logits"]))
                    ok &= f["loss"][()] == ref["loss"] and f["loss_after"][()] == ref["loss_after"]
                    ok &= all(np.array_equal(g[k], ref["grads"][k]) and g[k].dtype == np.float64
                              and np.array_equal(pa[k], ref["params_after"][k]) for k in names)
            ck.check(ok, f"{_cfg_name(a, n, act, tie)}: CLI run (strings as "
                     f"{'bytes' if i == 0 else 'str'}) exit {r.returncode}, OUT.h5 layout/values match"
                     + ("" if r.returncode == 0 else f": {r.stderr.strip()}"))

        cfg, params, batch = make_random_case(*ALL_CONFIGS[0], seed=600, adam_steps=1)
        bad = []
        p = dict(params); del p["decoder/layer_1/norm3/bias"]
        bad.append(("missing parameter", p, batch, "missing parameter"))
        p = dict(params); p["decoder/layer_0/extra/weight"] = np.zeros(3)
        bad.append(("unused parameter", p, batch, "unused parameter"))
        p = dict(params); p["encoder/layer_0/ffn/fc1/weight"] = params["encoder/layer_0/ffn/fc1/weight"].T
        bad.append(("shape mismatch", p, batch, "shape mismatch"))
        bt = dict(batch); bt["tgt_in"] = batch["tgt_in"].copy(); bt["tgt_in"][2, 5] = 3
        bad.append(("non-pad beyond length", params, bt, "non-pad"))
        bt = dict(batch); bt["src_len"] = np.array([5, 3, 0], dtype=np.int32)
        bt["src"] = batch["src"].copy(); bt["src"][2, 0] = cfg["pad_id"]
        bad.append(("zero length", params, bt, "must lie in"))
        p = dict(params); p["output/weight"] = params["embed/weight"]
        bad.append(("untied weight with tie_embeddings=1", p, batch, "unused parameter"))
        for j, (what, p, bt, expect) in enumerate(bad):
            case = os.path.join(d, f"bad{j}.h5")
            _write_case(case, cfg, p, bt, str_as_bytes=False)
            r = subprocess.run([sys.executable, me, case, os.path.join(d, f"badout{j}.h5")],
                               capture_output=True, text=True)
            ck.check(r.returncode == 1 and expect in r.stderr,
                     f"{what}: exit {r.returncode}, stderr: {r.stderr.strip()[:150]}")
        with h5py.File(os.path.join(d, "case0.h5"), "r+") as f:
            del f.attrs["lr"]
        r = subprocess.run([sys.executable, me, os.path.join(d, "case0.h5"), os.path.join(d, "x.h5")],
                           capture_output=True, text=True)
        ck.check(r.returncode == 1 and "lr" in r.stderr,
                 f"missing attribute: exit {r.returncode}, stderr: {r.stderr.strip()[:150]}")


def make_packed_case(norm, activation, tie, seed, B=3, T=10, V=11, eos_id=3):
    """A decoder-only case of packed blocks: no padding, EOS inside blocks (at the start, twice in a
    row, near the end), the document mask on."""
    cfg, params, _ = make_random_case("decoder-only", norm, activation, tie, seed, adam_steps=0, V=V,
                                      max_len=16)
    cfg["document_mask"], cfg["eos_id"] = 1, eos_id
    rng = np.random.default_rng(seed + 1)
    stream = rng.integers(4, V, size=B * T + 1).astype(np.int32)
    for at in (0, 4, 5, 13, 27):
        stream[at % (B * T)] = eos_id
    tgt_in = np.stack([stream[b * T:(b + 1) * T] for b in range(B)])
    tgt_out = np.stack([stream[b * T + 1:(b + 1) * T + 1] for b in range(B)])
    batch = {"tgt_in": tgt_in, "tgt_out": tgt_out, "tgt_len": np.full(B, T, dtype=np.int32)}
    return cfg, params, batch


def selftest_document_mask(ck):
    print("[6] document mask: no dependence across EOS inside a block; gradients vs finite differences")
    for ci, (n, act, tie) in enumerate([("post", "relu", True), ("pre", "gelu", False)]):
        cfg, params, batch = make_packed_case(n, act, tie, seed=700 + ci)
        ours = run_case(cfg, params, batch)
        # Change every token before the last EOS of row 0: later positions must not notice.
        row = batch["tgt_in"][0]
        last_eos = int(np.max(np.nonzero(row == cfg["eos_id"])[0]))
        other = {k: v.copy() for k, v in batch.items()}
        other["tgt_in"][0, :last_eos] = (other["tgt_in"][0, :last_eos] - 4 + 1) % (cfg["vocab_size"] - 4) + 4
        with torch.no_grad():
            lg = forward_logits({k: torch.tensor(v) for k, v in params.items()}, cfg, to_torch_batch(other)).numpy()
        after = float(np.max(np.abs(lg[0, last_eos:] - ours["logits"][0, last_eos:])))
        before = float(np.max(np.abs(lg[0, :last_eos] - ours["logits"][0, :last_eos])))
        # Without the mask the same change does reach the later positions.
        nomask = dict(cfg, document_mask=0)
        with torch.no_grad():
            P = {k: torch.tensor(v) for k, v in params.items()}
            leak = float(np.max(np.abs(forward_logits(P, nomask, to_torch_batch(other)).numpy()[0, last_eos:] -
                                       forward_logits(P, nomask, to_torch_batch(batch)).numpy()[0, last_eos:])))
        f = _loss_fn(cfg, to_torch_batch(batch))
        base = {k: torch.tensor(v, dtype=DTYPE) for k, v in params.items()}
        names = [x for x in expected_params(cfg) if "self_attn" in x and x.endswith("weight")][:3]
        worst, h = 0.0, 1e-6
        rng = np.random.default_rng(7)
        for name in names:
            for _ in range(3):
                idx = tuple(int(rng.integers(0, sdim)) for sdim in params[name].shape)
                with torch.no_grad():
                    Pp = dict(base); Pp[name] = base[name].clone(); Pp[name][idx] += h
                    Pm = dict(base); Pm[name] = base[name].clone(); Pm[name][idx] -= h
                    fd = (f(Pp).item() - f(Pm).item()) / (2 * h)
                g = ours["grads"][name][idx]
                worst = max(worst, abs(fd - g) / max(abs(g), 1e-3))
        ck.check(after == 0.0 and before > 1e-6 and leak > 1e-6 and worst < 1e-5,
                 f"decoder-only {n} {act} {'tied' if tie else 'untied'} packed: max|dlogits| after the EOS "
                 f"{after:.1e} (before it {before:.1e}; without the mask {leak:.1e}); FD worst rel err {worst:.1e}")


def selftest_learned_positions(ck):
    print("[7] learned positions: the sinusoidal table as pos_embed gives the sinusoidal model; "
          "its gradient vs finite differences")
    for ci, (a, n, act, tie) in enumerate([("encoder-decoder", "post", "relu", True),
                                           ("decoder-only", "pre", "gelu", False)]):
        cfg, params, batch = make_random_case(a, n, act, tie, seed=800 + ci, adam_steps=0)
        learned = dict(cfg, positions="learned")
        P = {k: torch.tensor(v, dtype=DTYPE) for k, v in params.items()}
        tb = to_torch_batch(batch)
        with torch.no_grad():
            ref = forward_logits(P, cfg, tb).numpy()
            same = forward_logits(dict(P, **{"pos_embed/weight": positional_encoding(cfg["max_len"], cfg["d_model"])}),
                                  learned, tb).numpy()
        same_diff = float(np.max(np.abs(same - ref)))
        rng = np.random.default_rng(ci)
        lp = dict(params, **{"pos_embed/weight": rng.normal(0.0, 0.3, (cfg["max_len"], cfg["d_model"]))})
        out = run_case(learned, lp, batch)
        f = _loss_fn(learned, tb)
        base = {k: torch.tensor(v, dtype=DTYPE) for k, v in lp.items()}
        g = out["grads"]["pos_embed/weight"]
        used = max(batch["tgt_len"].max(), batch["src_len"].max() if "src_len" in batch else 0)
        worst, h = 0.0, 1e-6
        for idx in [(0, 0), (1, 3), (int(used) - 1, 5), (int(used), 2), (cfg["max_len"] - 1, 1)]:
            with torch.no_grad():
                Pp = dict(base); Pp["pos_embed/weight"] = base["pos_embed/weight"].clone()
                Pp["pos_embed/weight"][idx] += h
                Pm = dict(base); Pm["pos_embed/weight"] = base["pos_embed/weight"].clone()
                Pm["pos_embed/weight"][idx] -= h
                fd = (f(Pp).item() - f(Pm).item()) / (2 * h)
            worst = max(worst, abs(fd - g[idx]) / max(abs(g[idx]), 1e-3))
        unused_zero = bool(np.all(g[int(used):] == 0.0))
        ck.check(same_diff == 0.0 and worst < 1e-5 and unused_zero and float(np.abs(g[:int(used)]).max()) > 1e-6,
                 f"{_cfg_name(a, n, act, tie)} learned: sinusoidal table as pos_embed max|dlogits| {same_diff:.1e}; "
                 f"FD worst rel err {worst:.1e}; rows past the longest sequence get no gradient: {unused_zero}")


def self_test():
    torch.manual_seed(0)
    ck = _Checker()
    selftest_finite_differences(ck)
    selftest_nn_transformer(ck)
    selftest_adamw_and_loss(ck)
    selftest_padding(ck)
    selftest_document_mask(ck)
    selftest_learned_positions(ck)
    if h5py is not None:
        selftest_files(ck)
    else:
        ck.check(False, "h5py missing: file round trip not tested")
    print("SELF-TEST " + ("PASSED" if ck.failures == 0 else f"FAILED ({ck.failures} failure(s))"))
    return 0 if ck.failures == 0 else 3


def main(argv):
    if len(argv) == 1 and argv[0] == "--self-test":
        return self_test()
    if len(argv) != 2 or any(a.startswith("-") for a in argv):
        print("usage: reference.py CASE.h5 OUT.h5\n       reference.py --self-test", file=sys.stderr)
        return 2
    try:
        main_case(argv[0], argv[1])
    except CaseError as e:
        print(f"reference.py: error: {argv[0]}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

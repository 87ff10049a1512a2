"""The decode steps behind ``rlexp.rollout.sampler``.

* ``GenericDecoder``: HF's forward with a ``DynamicCache``, for any causal LM.
* ``LlamaDecoder``: a hand-written Llama/Qwen2 step on the HF module's own weights, with a
  preallocated KV cache and a handful of ops per layer (``fast_path_supported`` says when).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import DynamicCache, LlamaForCausalLM, Qwen2ForCausalLM

from rlexp.models.logprobs import position_ids_from_mask

_STATIC_ROPE = ("default", "linear", "llama3", "yarn")  # inv_freq fixed at init


def cache_argument(model: nn.Module) -> str:
    """The forward's name for the KV cache: ``cache`` since transformers 5.20, before that
    ``past_key_values`` (a wrong name would be swallowed by ``**kwargs``: no cache, wrong logits)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"


class GenericDecoder:
    """Any HF causal LM: its own forward with a ``DynamicCache``."""

    def __init__(self, model: nn.Module, prompt_ids: Tensor, prompt_mask: Tensor, max_new: int):
        B = prompt_ids.shape[0]
        self.model, self.prompt_ids, self.prompt_mask = model, prompt_ids, prompt_mask.long()
        self.cache = DynamicCache(config=model.config)
        self.cache_kw = cache_argument(model)
        ones = self.prompt_mask.new_ones(B, max_new)
        self.mask = torch.cat([self.prompt_mask, ones], dim=1)  # [B, P + max_new]
        self.next_pos = self.prompt_mask.sum(1, keepdim=True)  # [B, 1] position of token 0

    def prefill(self) -> Tensor:
        out = self.model(
            input_ids=self.prompt_ids,
            attention_mask=self.prompt_mask,
            position_ids=position_ids_from_mask(self.prompt_mask),
            use_cache=True,
            **{self.cache_kw: self.cache},
        )
        return out.logits[:, -1].float()

    def step(self, tokens: Tensor, t: int) -> Tensor:
        P = self.prompt_ids.shape[1]
        out = self.model(
            input_ids=tokens[:, None],
            attention_mask=self.mask[:, : P + t + 1],
            position_ids=self.next_pos + t,
            use_cache=True,
            **{self.cache_kw: self.cache},
        )
        return out.logits[:, -1].float()


def fast_path_supported(model: nn.Module) -> bool:
    """True for Llama / Qwen2 causal LMs whose config the fast decoder reproduces exactly."""
    if not isinstance(model, (LlamaForCausalLM, Qwen2ForCausalLM)):
        return False
    cfg = model.config
    rope = getattr(model.model.rotary_emb, "rope_type", "default")
    layer_types = getattr(cfg, "layer_types", None) or ["full_attention"]
    return (
        cfg.hidden_act == "silu"
        and rope in _STATIC_ROPE
        and all(kind == "full_attention" for kind in layer_types)
        and model.model.layers[0].self_attn.head_dim % 2 == 0
    )


@dataclass
class _Layer:
    """One decoder layer, fused for decoding: weights transposed ``[in, out]``, biases or None.

    ``√h ·`` RMSNorm gains are folded into the input rows of ``w_qkv`` / ``w_gu`` (see
    :func:`_rms_normalize`), and q/k columns are reordered so each rotary pair is adjacent.
    """

    w_qkv: Tensor  # [h, (H + 2 Hkv) D]
    b_qkv: Tensor | None
    w_o: Tensor  # [H D, h]
    b_o: Tensor | None
    w_gu: Tensor  # [h, 2 I] gate columns then up columns
    b_gu: Tensor | None
    w_down: Tensor  # [I, h]
    b_down: Tensor | None


def _pair_rows(w: Tensor, head_dim: int) -> Tensor:
    """Reorder rows ``[n D, ...]`` per head from halves ``(x_i, x_{i+D/2})`` to adjacent pairs.

    RoPE's ``rotate_half`` then becomes a complex multiply; q·k is unchanged because q and k get
    the same permutation.
    """
    half = head_dim // 2
    perm = torch.stack([torch.arange(half), torch.arange(half) + half], dim=1).flatten()
    return w.unflatten(0, (-1, head_dim))[:, perm.to(w.device)].flatten(0, 1)


def _cat_bias(*linears: nn.Linear, pair: int = 0, head_dim: int = 0) -> Tensor | None:
    """Concatenated biases of linears (the first ``pair`` of them pair-reordered), or None."""
    if all(lin.bias is None for lin in linears):
        return None
    biases = [
        lin.bias if lin.bias is not None else lin.weight.new_zeros(lin.out_features)
        for lin in linears
    ]
    return torch.cat([_pair_rows(b, head_dim) if i < pair else b for i, b in enumerate(biases)])


def _fuse_layer(layer: nn.Module, head_dim: int) -> _Layer:
    attn, mlp = layer.self_attn, layer.mlp
    q, k, v = attn.q_proj, attn.k_proj, attn.v_proj
    root_h = layer.input_layernorm.weight.shape[0] ** 0.5
    ln1 = layer.input_layernorm.weight * root_h
    ln2 = layer.post_attention_layernorm.weight * root_h
    w_qkv = torch.cat([_pair_rows(q.weight, head_dim), _pair_rows(k.weight, head_dim), v.weight])
    w_gu = torch.cat([mlp.gate_proj.weight, mlp.up_proj.weight])
    return _Layer(
        w_qkv=(w_qkv * ln1).t().contiguous(),
        b_qkv=_cat_bias(q, k, v, pair=2, head_dim=head_dim),
        w_o=attn.o_proj.weight.t(),
        b_o=attn.o_proj.bias,
        w_gu=(w_gu * ln2).t().contiguous(),
        b_gu=_cat_bias(mlp.gate_proj, mlp.up_proj),
        w_down=mlp.down_proj.weight.t(),
        b_down=mlp.down_proj.bias,
    )


def _rms_normalize(x: Tensor, h_eps: Tensor) -> Tensor:
    """``x · rsqrt(Σx² + h·eps)`` = HF ``LlamaRMSNorm(x) / (√h · gain)``; x ``[N, h]``.

    ``√h · gain`` is folded into the next matmul; ``h_eps`` is a 0-dim fp32 tensor.
    """
    xf = x.float()
    norm = torch.linalg.vector_norm(xf, dim=-1, keepdim=True)
    return (xf * norm.mul_(norm).add_(h_eps).rsqrt_()).to(x.dtype)


def _matmul(x: Tensor, w: Tensor, b: Tensor | None) -> Tensor:
    """``x w + b``; x ``[N, in]``, w ``[in, out]``."""
    return torch.mm(x, w) if b is None else torch.addmm(b, x, w)


def _add_matmul_(x: Tensor, a: Tensor, w: Tensor, b: Tensor | None) -> Tensor:
    """Residual ``x += a w + b`` in place; x ``[N, out]``, a ``[N, in]``, w ``[in, out]``."""
    x.addmm_(a, w)
    return x if b is None else x.add_(b)


def _rope(x: Tensor, freqs: Tensor, out: Tensor | None = None) -> Tensor:
    """Rotate adjacent pairs of x ``[B, n, heads, D]`` by complex freqs ``[B, n, 1, D/2]``.

    Writes into ``out`` (same shape, any strides, e.g. a KV-cache slot) when given.
    """
    if x.dtype == torch.float32:
        xc = torch.view_as_complex(x.unflatten(-1, (-1, 2)))
        if out is None:
            return torch.view_as_real(xc * freqs).flatten(-2)
        torch.mul(xc, freqs, out=torch.view_as_complex(out.unflatten(-1, (-1, 2))))
        return out
    # No complex type for bf16: rotate in fp32 and cast back.
    rotated = _rope(x.float(), freqs).to(x.dtype)
    return rotated if out is None else out.copy_(rotated)


class LlamaDecoder:
    """Llama/Qwen2 decode loop on the HF weights with a preallocated ``[B, Hkv, S, D]`` cache.

    Per layer and step: one qkv matmul, rotary as complex multiplies (k written straight into the
    cache), attention as ``baddbmm``/``softmax``/``bmm`` with the G = H / Hkv query heads of a kv
    head as the rows of one product (GQA without ``repeat_kv``), and residual adds fused into
    ``addmm``. Fused weights are rebuilt per call (they are small next to a rollout) so they never
    go stale during training.
    """

    def __init__(self, model: nn.Module, prompt_ids: Tensor, prompt_mask: Tensor, max_new: int):
        cfg, core = model.config, model.model
        self.H, self.Hkv = H, Hkv = cfg.num_attention_heads, cfg.num_key_value_heads
        self.D = D = core.layers[0].self_attn.head_dim
        if prompt_ids.device.type == "cpu":
            # PyTorch's CPU bmm drops to a scalar loop below 400 multiply-adds per matrix
            # (G·D·keys); extra left padding, which is masked, keeps it on the BLAS path.
            min_len = 400 // (H // Hkv * D) + 1
            pad = max(0, min_len - prompt_ids.shape[1])
            prompt_ids, prompt_mask = F.pad(prompt_ids, (pad, 0)), F.pad(prompt_mask, (pad, 0))
        self.B, self.P = B, P = prompt_ids.shape
        self.prompt_ids, self.embed = prompt_ids, core.embed_tokens.weight
        dtype, dev, S, h = self.embed.dtype, prompt_ids.device, P + max_new, cfg.hidden_size
        self.h_eps = torch.tensor(h * cfg.rms_norm_eps, device=dev)
        self.lm_head = (model.lm_head.weight * (core.norm.weight * h**0.5)).t().contiguous()
        self.layers = [_fuse_layer(layer, D) for layer in core.layers]
        k = torch.empty(len(self.layers), B, Hkv, S, D, dtype=dtype, device=dev)
        v = torch.empty_like(k)
        # Per-layer views: slots [B, S, Hkv, D] to write, rows [B Hkv, S, D] to attend over.
        self.k_slots, self.v_slots = k.transpose(2, 3).unbind(0), v.transpose(2, 3).unbind(0)
        self.k_rows_t = k.view(-1, B * Hkv, S, D).transpose(2, 3).unbind(0)  # [B Hkv, D, S]
        self.v_rows = v.view(-1, B * Hkv, S, D).unbind(0)

        # Rotary table for every position, exactly as HF's rotary_emb (incl. attention_scaling).
        rot = core.rotary_emb
        angles = torch.arange(S, device=dev, dtype=torch.float)[:, None] * rot.inv_freq.float()
        table = torch.polar(torch.full_like(angles, rot.attention_scaling), angles)  # [S, D/2]
        mask = prompt_mask.bool()
        self.prefill_freqs = table[position_ids_from_mask(mask)][:, :, None]  # [B, P, 1, D/2]
        step_pos = mask.sum(1)[None, :] + torch.arange(max_new, device=dev)[:, None]
        self.step_freqs = table[step_pos][:, :, None, None]  # [max_new, B, 1, 1, D/2]

        # Additive masks; a pad query may see itself so that no softmax row is all -inf.
        neg, G = torch.finfo(dtype).min, H // Hkv
        keys = torch.cat([mask, mask.new_ones(B, max_new)], dim=1)  # [B, S]
        step_bias = torch.zeros(B, S, dtype=dtype, device=dev).masked_fill(~keys, neg)
        self.step_bias = step_bias.repeat_interleave(Hkv, 0)[:, None]  # [B Hkv, 1, S]
        causal = torch.ones(P, P, dtype=torch.bool, device=dev).tril()
        allowed = causal & (mask[:, None, :] | torch.eye(P, dtype=torch.bool, device=dev))
        bias = torch.zeros(B, P, P, dtype=dtype, device=dev).masked_fill(~allowed, neg)
        bias = bias[:, None, :, None].expand(B, Hkv, P, G, P)
        self.prefill_bias = bias.reshape(B * Hkv, P * G, P)  # rows ordered (query, group)

    def _attention(self, x: Tensor, i: int, freqs: Tensor, bias: Tensor, s0: int) -> Tensor:
        """Attention block of layer i for n new tokens at cache slots ``s0 …``; x ``[B n, h]``."""
        B, H, Hkv, D, lw = self.B, self.H, self.Hkv, self.D, self.layers[i]
        n, G = x.shape[0] // B, H // Hkv
        s = s0 + n
        proj = _matmul(_rms_normalize(x, self.h_eps), lw.w_qkv, lw.b_qkv)
        q = _rope(proj[:, : H * D].view(B, n, H, D), freqs)
        k_new = proj[:, H * D : (H + Hkv) * D].view(B, n, Hkv, D)
        _rope(k_new, freqs, out=self.k_slots[i][:, s0:s])
        self.v_slots[i][:, s0:s] = proj[:, (H + Hkv) * D :].view(B, n, Hkv, D)
        if n == 1:  # decode: the rows of kv head j are its G query heads, already contiguous
            q = q.view(B * Hkv, G, D)
        else:
            q = q.view(B, n, Hkv, G, D).transpose(1, 2).reshape(B * Hkv, n * G, D)
        scores = torch.baddbmm(bias, q, self.k_rows_t[i][:, :, :s], alpha=D**-0.5)
        if scores.dtype == torch.float32:
            probs = scores.softmax(-1)
        else:  # softmax in fp32, like HF
            probs = scores.float().softmax(-1).to(x.dtype)
        out = torch.bmm(probs, self.v_rows[i][:, :s])
        out = out.view(B, Hkv, n, G, D).transpose(1, 2).reshape(B * n, H * D)
        return _add_matmul_(x, out, lw.w_o, lw.b_o)

    def _forward(self, ids: Tensor, freqs: Tensor, bias: Tensor, s0: int) -> Tensor:
        """All layers on ids ``[B, n]`` at cache slots ``s0 …``; logits ``[B, V]`` of the last."""
        x = F.embedding(ids.reshape(-1), self.embed)  # [B n, h]
        for i, lw in enumerate(self.layers):
            x = self._attention(x, i, freqs, bias, s0)
            gu = _matmul(_rms_normalize(x, self.h_eps), lw.w_gu, lw.b_gu)
            inter = gu.shape[1] // 2
            x = _add_matmul_(x, F.silu(gu[:, :inter]).mul_(gu[:, inter:]), lw.w_down, lw.b_down)
        last = x.view(self.B, -1, x.shape[-1])[:, -1]
        return torch.mm(_rms_normalize(last, self.h_eps), self.lm_head).float()

    def prefill(self) -> Tensor:
        return self._forward(self.prompt_ids, self.prefill_freqs, self.prefill_bias, 0)

    def step(self, tokens: Tensor, t: int) -> Tensor:
        s0 = self.P + t
        bias = self.step_bias[:, :, : s0 + 1]
        return self._forward(tokens[:, None], self.step_freqs[t], bias, s0)

"""The host graph: an artifact's weights in the operator form onnxruntime's CPU kernels run fastest,
for `dsedge run` and `dsedge bench` on this host. The TensorRT graph (model.onnx) stays standard
ONNX; this one is derived from it, never shipped, and cached.

What changes against model.onnx (all contrib ops of onnxruntime's com.microsoft domain):

    Gather(embed fp16) -> Cast fp32                               activations FP32 on the CPU, no casts inside
    SkipSimplifiedLayerNormalization                             residual add + RMSNorm, one kernel
    MatMulNBits(packed q|k|v, bias)                              one weight read for the three projections
    GroupQueryAttention(do_rotary)                               rotary + GQA + softmax, in place in a
                                                                 preallocated cache (past and present share it)
    MatMulNBits(packed gate|up) -> Split -> x * sigmoid(x) * up   SwiGLU
    head on the last position only                               (the standard graph's logits for every position)

The weights are the artifact's own codes and scales, repacked, not requantized: MatMulNBits stores
a column's block as unsigned codes (q + 8 for INT4, q + 128 for INT8, low nibble first) with the
same scales, so every weight dequantizes to exactly the value the standard graph's DequantizeLinear
gives. Per-channel INT8 gets its scale repeated per block. A weight whose block size MatMulNBits
cannot take (not a power of two >= 16) keeps DequantizeLinear + MatMul. Unquantized linears (FP16
builds, the head unless --quantize-lm-head) become FP32 MatMuls: what onnxruntime's constant
folding makes of the standard graph's FP16 weights anyway.

Families: those with a per-head KV cache and a dense MLP (ArchSpec.attention "gqa", no MoE), per-head
q / k norms included; weight-only builds. MLA, MoE and SmoothQuant W8A8 (activations quantized in
the graph) keep the standard graph: `Unhostable` says why.
"""
from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..host_graph import HOST_DATA, HOST_VERSION, LEVELS, UNHOSTABLE_EXIT, Unhostable, host_file

MS = "com.microsoft"
_INLINE = 1024                     # bytes: smaller initializers stay inside the proto
_ALIGN = 4096


class _Weights:
    """Initializers streamed to one external data file as they are made: the graph holds no bytes."""

    def __init__(self, path: Path):
        self.f = open(path, "wb")
        self.location = path.name
        self.tensors: list[TensorProto] = []

    def add(self, name: str, arr: np.ndarray) -> str:
        arr = np.ascontiguousarray(arr)
        if arr.nbytes <= _INLINE:
            self.tensors.append(numpy_helper.from_array(arr, name))
            return name
        t = TensorProto(name=name, data_type=helper.np_dtype_to_tensor_dtype(arr.dtype), dims=arr.shape)
        pad = -self.f.tell() % _ALIGN
        self.f.write(b"\0" * pad)
        offset = self.f.tell()
        self.f.write(memoryview(arr).cast("B"))
        t.data_location = TensorProto.EXTERNAL
        for k, v in (("location", self.location), ("offset", str(offset)), ("length", str(arr.nbytes))):
            t.external_data.add(key=k, value=v)
        self.tensors.append(t)
        return name

    def close(self):
        self.f.close()


class _Source:
    """model.onnx's initializers by name (read on demand, external data included) and the
    attributes of the DequantizeLinear that reads each quantized weight."""

    def __init__(self, path: Path):
        self.base = str(path.parent)
        self.model = onnx.load(str(path), load_external_data=False)
        g = self.model.graph
        self.init = {t.name: t for t in g.initializer}
        self.dq = {n.input[0]: {a.name: helper.get_attribute_value(a) for a in n.attribute}
                   for n in g.node if n.op_type == "DequantizeLinear"}
        if any(n.op_type == "If" for n in g.node):
            raise Unhostable("its MoE layers (one If per expert) have no host form yet")
        if any(i.name.startswith("past_key_values.") and i.type.tensor_type.elem_type == TensorProto.INT8
               for i in g.input):
            raise Unhostable("its KV cache is INT8 (--kv-cache int8), which GroupQueryAttention does not take here")
        if any(n.op_type == "QuantizeLinear" for n in g.node):
            raise Unhostable("its activations are quantized in the graph (W8A8), which MatMulNBits does not do")

    def embedding(self, vocab: int) -> str:
        """The token embedding's initializer: the Gather that reads it (a tied checkpoint's is one
        tensor for the embedding and the head, named by whichever the exporter met first)."""
        for n in self.model.graph.node:
            t = self.init.get(n.input[0]) if n.op_type == "Gather" else None
            if t is not None and len(t.dims) == 2 and t.dims[0] == vocab:
                return n.input[0]
        raise Unhostable("model.onnx has no embedding Gather")

    def has(self, name: str) -> bool:
        return name in self.init

    def array(self, name: str) -> np.ndarray:
        a = numpy_helper.to_array(self.init[name], base_dir=self.base)
        if a.dtype.name in ("int4", "uint4"):     # ml_dtypes' 4-bit types: widen for arithmetic
            a = a.astype(np.int8 if a.dtype.name == "int4" else np.uint8)
        return a


def _block_for(k: int, group: int) -> int | None:
    """MatMulNBits' block for a weight quantized in groups of `group` (-1: per channel)."""
    if group > 0:
        return group if group >= 16 and group & (group - 1) == 0 and k % group == 0 else None
    return next((b for b in (128, 64, 32, 16) if k % b == 0), None)


class _Linear:
    """One linear layer read from model.onnx: codes (K, N) or an FP16 weight, scales, zero points."""

    def __init__(self, src: _Source, module: str):
        self.module, p = module, f"m.{module}"
        self.bias = src.array(f"{p}.bias").astype(np.float32) if src.has(f"{p}.bias") else None
        self.perm = src.array(f"{p}.weight_perm").astype(np.int64) if src.has(f"{p}.weight_perm") else None
        if src.has(f"{p}.weight_quantized"):
            q = f"{p}.weight_quantized"
            attrs = src.dq.get(q, {})
            self.codes = src.array(q)                                        # (K, N) int8 / uint8
            self.bits = 4 if src.init[q].data_type in (TensorProto.INT4, TensorProto.UINT4) else 8
            self.signed = src.init[q].data_type in (TensorProto.INT4, TensorProto.INT8)
            self.scale = src.array(f"{p}.weight_scale").astype(np.float32)   # (K/g, N) or (N,)
            self.zero = src.array(f"{p}.weight_zero_point") if src.has(f"{p}.weight_zero_point") else None
            self.group = -1 if self.scale.ndim == 1 else int(attrs.get("block_size", 0))
            self.k, self.n = self.codes.shape
        elif src.has(f"{p}.weight"):
            self.bits, self.weight = None, src.array(f"{p}.weight")           # (N, K) fp16
            self.n, self.k = self.weight.shape
        else:
            raise Unhostable(f"model.onnx has no weight for {module}")

    def scheme(self):
        """Linears with one scheme can be packed into one MatMulNBits along N."""
        if self.bits is None:
            return None
        perm = None if self.perm is None else self.perm.tobytes()    # one Gather in front: one permutation
        return (self.bits, self.group, self.signed, self.zero is not None, perm, self.k)

    def nbits_parts(self, block: int):
        """-> (B (N, K/block, block*bits/8) uint8, scales (N * K/block,) fp32, zero points or None)."""
        off = (1 << (self.bits - 1)) if self.signed else 0
        u = (self.codes.T.astype(np.int16) + off).astype(np.uint8)            # (N, K)
        nb = self.k // block
        u = u.reshape(self.n, nb, block)
        b = (u[..., 0::2] | (u[..., 1::2] << 4)) if self.bits == 4 else u
        s = np.ascontiguousarray(_per_block(self.scale, nb), np.float32)
        if self.zero is None:
            return b, s.reshape(-1), None if off else np.zeros((self.n, nb), np.uint8)
        return b, s.reshape(-1), (_per_block(self.zero, nb).astype(np.int16) + off).astype(np.uint8)

    def dequantized(self) -> np.ndarray:
        """(K, N) fp32: DequantizeLinear's arithmetic, (q - z) * s, once."""
        q = self.codes.astype(np.float32)
        if self.zero is not None:
            q -= _per_row(self.zero, self.k)
        return q * _per_row(self.scale, self.k)


def _per_block(a: np.ndarray, nb: int) -> np.ndarray:
    """A (K/g, N) blocked or (N,) per-channel scale / zero point -> (N, nb)."""
    return a.T if a.ndim == 2 else np.repeat(a[:, None], nb, axis=1)


def _per_row(a: np.ndarray, k: int) -> np.ndarray:
    """The same -> broadcastable against (K, N) codes."""
    return a.astype(np.float32) if a.ndim == 1 else np.repeat(a.astype(np.float32), k // a.shape[0], axis=0)


def _pack_zero(z: np.ndarray, bits: int) -> np.ndarray:
    """(N, nb) unsigned zero points -> MatMulNBits' (N * ceil(nb * bits / 8),) uint8."""
    if bits == 8:
        return z.reshape(-1)
    if z.shape[1] % 2:
        z = np.concatenate([z, np.zeros((z.shape[0], 1), np.uint8)], axis=1)
    return (z[:, 0::2] | (z[:, 1::2] << 4)).reshape(-1)


class _Graph:
    def __init__(self, w: _Weights):
        self.w, self.nodes, self.n = w, [], 0

    def op(self, op: str, inputs, n_out: int = 1, domain: str = "", outs: list[str] | None = None, **attrs):
        self.n += 1
        outs = outs or [f"{op.lower()}_{self.n}_{i}" for i in range(n_out)]
        self.nodes.append(helper.make_node(op, list(inputs), outs, name=f"{op}_{self.n}", domain=domain, **attrs))
        return outs[0] if n_out == 1 else outs

    def const(self, name: str, arr: np.ndarray) -> str:
        return self.w.add(name, arr)

    def linear(self, x: str, parts: list[_Linear], name: str) -> str:
        """x @ W (+ bias) for the linears `parts` concatenated along N (one scheme)."""
        head = parts[0]
        bias = [p.bias if p.bias is not None else np.zeros(p.n, np.float32) for p in parts]
        has_bias = any(p.bias is not None for p in parts)
        if head.perm is not None:     # act-order: gather the activation's input channels (as model.onnx does)
            x = self.op("Gather", [x, self.const(f"{name}.perm", head.perm)], axis=-1)
        block = _block_for(head.k, head.group) if head.bits else None
        if head.bits is None or block is None:
            return self._dense(x, parts, name, bias if has_bias else None)
        b, s, z = zip(*(p.nbits_parts(block) for p in parts))
        ins = [x, self.const(f"{name}.B", np.concatenate(b)), self.const(f"{name}.scales", np.concatenate(s))]
        ins.append(self.const(f"{name}.zero_points", _pack_zero(np.concatenate(z), head.bits)) if z[0] is not None else "")
        ins += ["", self.const(f"{name}.bias", np.concatenate(bias))] if has_bias else []
        n = sum(p.n for p in parts)
        return self.op("MatMulNBits", ins, domain=MS, K=head.k, N=n, bits=head.bits, block_size=block,
                       accuracy_level=0)

    def _dense(self, x, parts, name, bias):
        cols = [np.ascontiguousarray(p.weight.T, np.float32) if p.bits is None else p.dequantized()
                for p in parts]                                                     # (K, N) each
        w = cols[0] if len(cols) == 1 else np.concatenate(cols, axis=1)     # (K, N): one copy of a big head
        del cols
        y = self.op("MatMul", [x, self.const(f"{name}.weight", w)])
        return self.op("Add", [y, self.const(f"{name}.bias", np.concatenate(bias))]) if bias is not None else y


def _packs(linears: list[_Linear]) -> list[list[_Linear]]:
    """Runs of consecutive linears of one scheme (packable), in order."""
    out: list[list[_Linear]] = []
    for lin in linears:
        if out and lin.scheme() is not None and out[-1][0].scheme() == lin.scheme():
            out[-1].append(lin)
        else:
            out.append([lin])
    return out


def rotary_tables(config, length: int) -> tuple[np.ndarray, np.ndarray]:
    """cos, sin (length, head_dim / 2) fp32, by the model's own rotary module (rope scaling and
    its attention scaling included), as GroupQueryAttention's cos_cache / sin_cache take them."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        meta = AutoModelForCausalLM.from_config(config)
    rotary = type(meta.model.rotary_emb)(config=config)
    pos = torch.arange(length)[None]
    cos, sin = rotary(torch.zeros(1, dtype=torch.float32), pos)      # (1, L, hd)
    half = cos.shape[-1] // 2
    return cos[0, :, :half].numpy().astype(np.float32), sin[0, :, :half].numpy().astype(np.float32)


def write_host_graph(folder: Path, out: Path, max_length: int | None = None) -> dict:
    """Write out/model.host.onnx (+ .data) from the artifact `folder`. -> what it holds (meta)."""
    from transformers import AutoConfig

    from ..archs import arch_for

    folder, out = Path(folder), Path(out)
    raw = json.loads((folder / "config.json").read_text())
    spec = arch_for(raw)
    if spec.attention != "gqa" or spec.moe is not None:
        raise Unhostable(f"{spec.name} ({spec.attention}{', MoE' if spec.moe else ''}) has no host form yet")
    src = _Source(folder / "model.onnx")
    config = AutoConfig.from_pretrained(folder)
    h, nh, nkv = config.hidden_size, config.num_attention_heads, config.num_key_value_heads
    hd = getattr(config, "head_dim", None) or h // nh
    eps, n_layers = float(config.rms_norm_eps), config.num_hidden_layers
    length = int(max_length or getattr(config, "max_position_embeddings", 4096))
    w = _Weights(out / HOST_DATA)
    g = _Graph(w)
    try:
        f = lambda name: src.array(name).astype(np.float32)  # noqa: E731  (norm weights, fp16 in model.onnx)
        cos, sin = rotary_tables(config, length)
        cos, sin = g.const("cos_cache", cos), g.const("sin_cache", sin)
        embed_name = src.embedding(int(config.vocab_size))
        embed = g.const("embed_tokens", src.array(embed_name))                           # (V, H) fp16
        x = g.op("Cast", [g.op("Gather", [embed, "input_ids"])], to=TensorProto.FLOAT)  # (1, S, H)
        pre = f"m.{spec.layers_prefix}"
        hidden, residual = None, x
        cache_in, cache_out = [], []
        for i in range(n_layers):
            blk = f"{spec.layers_prefix}.{i}"
            ln = g.const(f"l{i}.input_norm", f(f"{pre}.{i}.input_layernorm.weight"))
            if hidden is None:
                normed = g.op("SimplifiedLayerNormalization", [x, ln], epsilon=eps, axis=-1)
            else:
                normed, _, _, residual = g.op("SkipSimplifiedLayerNormalization", [hidden, residual, ln], 4,
                                              domain=MS, epsilon=eps)
            qkv = [_Linear(src, f"{blk}.self_attn.{p}_proj") for p in "qkv"]
            packs = _packs(qkv)
            proj = [g.linear(normed, p, f"l{i}.{'_'.join(x.module.rsplit('.', 1)[1] for x in p)}") for p in packs]
            q_k_v = list(proj) if len(proj) == 3 else None
            if len(proj) == 2:     # q | kv or qk | v: split the packed one back (GQA takes packed or three)
                two = [p for p in packs if len(p) == 2][0]
                a, b = g.op("Split", [proj[packs.index(two)], g.const(f"l{i}.split_qkv", np.array([two[0].n, two[1].n]))],
                            2, axis=-1)
                q_k_v = [a, b, proj[1]] if packs.index(two) == 0 else [proj[0], a, b]
            past = [f"past_key_values.{i}.key", f"past_key_values.{i}.value"]
            present = [f"present.{i}.key", f"present.{i}.value"]
            cache_in += past
            cache_out += present
            if src.has(f"{pre}.{i}.self_attn.q_norm.weight"):
                # per-head RMSNorm of q and k before rotary. GroupQueryAttention's q/k norm
                # inputs run on CUDA and WebGPU only (onnxruntime 1.32), so: reshape, norm, reshape.
                if q_k_v is None:
                    q_k_v = g.op("Split", [proj[0], g.const(f"l{i}.split_qkv", np.array([p.n for p in qkv]))], 3, axis=-1)
                for j, (what, heads) in enumerate((("q", nh), ("k", nkv))):
                    r = g.op("Reshape", [q_k_v[j], g.const(f"l{i}.{what}_heads", np.array([0, 0, heads, hd]))])
                    r = g.op("SimplifiedLayerNormalization", [r, g.const(f"l{i}.{what}_norm",
                             f(f"{pre}.{i}.self_attn.{what}_norm.weight"))], epsilon=eps, axis=-1)
                    q_k_v[j] = g.op("Reshape", [r, g.const(f"l{i}.{what}_flat", np.array([0, 0, heads * hd]))])
            ins = ([proj[0], "", ""] if q_k_v is None else list(q_k_v)) + past + ["seqlens_k", "total_sequence_length",
                                                                                   cos, sin]
            attrs = {"num_heads": nh, "kv_num_heads": nkv, "do_rotary": 1, "scale": float(hd) ** -0.5}
            attn = g.op("GroupQueryAttention", ins, 3, domain=MS, outs=[f"gqa_{i}", *present], **attrs)[0]
            o = g.linear(attn, [_Linear(src, f"{blk}.self_attn.o_proj")], f"l{i}.o_proj")
            ln = g.const(f"l{i}.post_norm", f(f"{pre}.{i}.post_attention_layernorm.weight"))
            normed, _, _, residual = g.op("SkipSimplifiedLayerNormalization", [o, residual, ln], 4, domain=MS,
                                          epsilon=eps)
            gate, up = (_Linear(src, f"{blk}.mlp.{p}_proj") for p in ("gate", "up"))
            if len(_packs([gate, up])) == 1:
                gu = g.linear(normed, [gate, up], f"l{i}.gate_up")
                gv, uv = g.op("Split", [gu, g.const(f"l{i}.split_gu", np.array([gate.n, up.n]))], 2, axis=-1)
            else:
                gv, uv = g.linear(normed, [gate], f"l{i}.gate"), g.linear(normed, [up], f"l{i}.up")
            act = g.op("Mul", [g.op("Mul", [gv, g.op("Sigmoid", [gv])]), uv])
            hidden = g.linear(act, [_Linear(src, f"{blk}.mlp.down_proj")], f"l{i}.down")
        ln = g.const("final_norm", f(f"m.{spec.layers_prefix.rsplit('.', 1)[0]}.norm.weight"))
        normed = g.op("SkipSimplifiedLayerNormalization", [hidden, residual, ln], 1, domain=MS, epsilon=eps)
        last = g.op("Slice", [normed, g.const("minus_one", np.array([-1])), g.const("big", np.array([1 << 62])),
                              g.const("axis_1", np.array([1]))])
        head = spec.head if (src.has(f"m.{spec.head}.weight") or src.has(f"m.{spec.head}.weight_quantized")) \
            else embed_name[2:].rsplit(".", 1)[0]                                      # tied: the embedding
        logits = g.linear(last, [_Linear(src, head)], "lm_head")
        g.op("Identity", [logits], outs=["logits"])
    finally:
        w.close()
    f32 = TensorProto.FLOAT
    inputs = [helper.make_tensor_value_info("input_ids", TensorProto.INT64, [1, "sequence"]),
              helper.make_tensor_value_info("seqlens_k", TensorProto.INT32, [1]),
              helper.make_tensor_value_info("total_sequence_length", TensorProto.INT32, [])]
    inputs += [helper.make_tensor_value_info(n, f32, [1, nkv, "capacity", hd]) for n in cache_in]
    outputs = [helper.make_tensor_value_info("logits", f32, [1, 1, int(config.vocab_size)])]
    outputs += [helper.make_tensor_value_info(n, f32, [1, nkv, "capacity", hd]) for n in cache_out]
    graph = helper.make_graph(g.nodes, "dsedge-host", inputs, outputs, initializer=w.tensors)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21), helper.make_opsetid(MS, 1)],
                              producer_name="dsedge-host")
    for level in LEVELS:
        for n in model.graph.node:
            if n.op_type == "MatMulNBits":
                next(a for a in n.attribute if a.name == "accuracy_level").i = level
        tmp = out / f".{host_file(level)}.tmp-{os.getpid()}"
        onnx.save_model(model, str(tmp))
        os.replace(tmp, out / host_file(level))
    return {"version": HOST_VERSION, "layers": n_layers, "kv_heads": nkv, "head_dim": hd, "max_length": length,
            "vocab_size": int(config.vocab_size), "ops": dict(Counter(n.op_type for n in g.nodes))}


if __name__ == "__main__":     # python -m dsedge.export.host ARTIFACT OUT (what _write_in_child runs)
    import sys

    try:
        meta = write_host_graph(Path(sys.argv[1]), Path(sys.argv[2]))
    except Unhostable as e:
        print(e)
        sys.exit(UNHOSTABLE_EXIT)
    (Path(sys.argv[2]) / "meta.json").write_text(json.dumps(meta))

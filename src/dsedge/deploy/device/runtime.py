"""Run an artifact on the device: TensorRT (model.engine) or onnxruntime (model.onnx), both
with the KV cache, both as `run(ids, past) -> (last-position logits, present)`."""
from __future__ import annotations

import ctypes
import os
from pathlib import Path

ENGINE_FILE, ONNX_FILE = "model.engine", "model.onnx"


def tensorrt_available() -> bool:
    try:
        import tensorrt  # noqa: F401
        return True
    except ImportError:
        return False


def pick_runtime(folder: Path, runtime: str = "auto") -> str:
    """auto: TensorRT where it imports and the folder has an engine, else onnxruntime."""
    if runtime != "auto":
        return runtime
    return "tensorrt" if tensorrt_available() and (Path(folder) / ENGINE_FILE).is_file() else "onnxruntime"


ACCURACY_LEVELS = (0, 1, 2, 3, 4)


class OrtDecoder:
    """onnxruntime over model.onnx. accuracy_level: onnxruntime's MatMulNBits compute type for
    the int4 weights (session.qdq_matmulnbits_accuracy_level). 1 (the default) keeps activations
    float, as dsedge's host check runs it, so tokens compare exactly; 4 quantizes activations to
    INT8 inside the kernel (faster on CPUs with VNNI / AVX512 and what onnxruntime-genai's int4
    CPU models default to; its error is not part of the build's accuracy figures)."""
    name = "onnxruntime"

    def __init__(self, folder: Path, threads: int | None = None, accuracy_level: int = 1):
        import numpy as np
        import onnxruntime as ort

        if accuracy_level not in ACCURACY_LEVELS:
            raise ValueError(f"accuracy level {accuracy_level} is not one of {ACCURACY_LEVELS}")
        self.accuracy_level = accuracy_level
        so = ort.SessionOptions()
        so.add_session_config_entry("session.qdq_matmulnbits_accuracy_level", str(accuracy_level))
        so.log_severity_level = 3
        if threads:
            so.intra_op_num_threads = threads
        self.np = np
        self.session = ort.InferenceSession(str(Path(folder) / ONNX_FILE), so, providers=["CPUExecutionProvider"])
        self.cache_inputs = [i for i in self.session.get_inputs() if i.name.startswith("past_key_values.")]
        # the cache's dtype: the activations' (float16 / float32), or int8 (--kv-cache int8)
        self.dtype = {"tensor(float16)": np.float16, "tensor(float)": np.float32,
                      "tensor(int8)": np.int8}[self.cache_inputs[0].type]
        self.cache_dims = [(i.shape[1], i.shape[3]) for i in self.cache_inputs]  # K/V heads or MLA's 1, dim
        self.outputs = [o.name for o in self.session.get_outputs()]

    def run(self, ids, past=None):
        np = self.np
        t = ids.shape[1]
        if past is None:
            past = [np.zeros((1, h, 0, d), self.dtype) for h, d in self.cache_dims]
        p = past[0].shape[2]
        feed = {"input_ids": ids.astype(np.int64), "attention_mask": np.ones((1, p + t), np.int64),
                "position_ids": np.arange(p, p + t, dtype=np.int64)[None]}
        feed.update({i.name: c for i, c in zip(self.cache_inputs, past)})
        logits, *present = self.session.run(self.outputs, feed)
        return logits[0, -1].astype(np.float32), present

    def window_logits(self, ids):
        """ids (1, T), a new sequence -> logits (T, V) float32 of every position."""
        np = self.np
        t = ids.shape[1]
        feed = {"input_ids": ids.astype(np.int64), "attention_mask": np.ones((1, t), np.int64),
                "position_ids": np.arange(t, dtype=np.int64)[None]}
        feed.update({i.name: np.zeros((1, h, 0, d), self.dtype) for i, (h, d) in zip(self.cache_inputs, self.cache_dims)})
        return self.session.run(["logits"], feed)[0][0].astype(np.float32)

    def release(self, past):
        pass


class HostGraphDecoder:
    """onnxruntime over the host graph (dsedge/export/host.py: MatMulNBits, GroupQueryAttention,
    SkipSimplifiedLayerNormalization, FP32 activations). The KV cache is one preallocated FP32
    buffer per tensor, bound as both past and present (GroupQueryAttention writes the new
    tokens in place), grown by doubling (a copy) when a sequence outgrows it; inputs and outputs
    go through IO binding, so a step copies only the token in and the logits out."""
    name = "onnxruntime"

    def __init__(self, graph: Path, threads: int | None = None, accuracy_level: int = 1, capacity: int = 256,
                 max_length: int | None = None):
        import numpy as np
        import onnxruntime as ort

        if accuracy_level not in ACCURACY_LEVELS:
            raise ValueError(f"accuracy level {accuracy_level} is not one of {ACCURACY_LEVELS}")
        self.np, self.ort, self.accuracy_level = np, ort, accuracy_level
        so = ort.SessionOptions()     # accuracy_level is the graph's own (one file per level): recorded here
        so.log_severity_level = 3
        if threads:
            so.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(graph), so, providers=["CPUExecutionProvider"])
        cache = [i for i in self.session.get_inputs() if i.name.startswith("past_key_values.")]
        self.cache_names = [i.name for i in cache]
        self.kv_heads, self.head_dim = cache[0].shape[1], cache[0].shape[3]
        self.vocab = self.session.get_outputs()[0].shape[2]
        self.max_length = max_length
        self.capacity, self.length = 0, 0
        self.kv: list = []
        self.logits = np.empty((1, 1, self.vocab), np.float32)
        self._grow(capacity)

    def _grow(self, need: int) -> None:
        np = self.np
        cap = max(need, 2 * self.capacity, 16)
        if self.max_length:
            cap = min(cap, self.max_length)
        if cap < need:
            raise ValueError(f"{need} tokens exceed the model's {self.max_length} positions")
        new = [np.zeros((1, self.kv_heads, cap, self.head_dim), np.float32) for _ in self.cache_names]
        for old, n in zip(self.kv, new):
            n[:, :, :self.length] = old[:, :, :self.length]
        self.kv, self.capacity = new, cap
        self.binding = b = self.session.io_binding()
        for name, buf in zip(self.cache_names, self.kv):
            v = self.ort.OrtValue.ortvalue_from_numpy(buf)
            b.bind_ortvalue_input(name, v)
            b.bind_ortvalue_output(name.replace("past_key_values.", "present."), v)
        b.bind_output("logits", "cpu", 0, np.float32, self.logits.shape, self.logits.ctypes.data)

    def run(self, ids, past=None):
        """past: the length the previous call returned (None: a new sequence). -> (logits, length)."""
        np = self.np
        p, t = (past or 0), ids.shape[1]
        if p + t > self.capacity:
            self.length = p
            self._grow(p + t)
        b = self.binding
        b.bind_cpu_input("input_ids", np.ascontiguousarray(ids, np.int64))
        b.bind_cpu_input("seqlens_k", np.array([p + t - 1], np.int32))
        b.bind_cpu_input("total_sequence_length", np.array(p + t, np.int32))
        self.session.run_with_iobinding(b)
        self.length = p + t
        return self.logits[0, -1].copy(), p + t

    def release(self, past):
        pass


class _Cuda:
    """The few CUDA runtime calls the TensorRT path needs, through ctypes (no cuda-python or
    pycuda on a stock JetPack)."""
    H2D, D2H = 1, 2

    def __init__(self):
        for name in ("libcudart.so", "libcudart.so.12", "/usr/local/cuda/lib64/libcudart.so"):
            try:
                self.lib = ctypes.CDLL(name)
                break
            except OSError:
                continue
        else:
            raise RuntimeError("libcudart not found (is CUDA installed? on Jetson it comes with JetPack)")
        self.stream = ctypes.c_void_p()
        self._check(self.lib.cudaStreamCreate(ctypes.byref(self.stream)), "cudaStreamCreate")

    def _check(self, code, what):
        if code != 0:
            raise RuntimeError(f"{what} failed with CUDA error {code}")

    def malloc(self, nbytes: int) -> int:
        ptr = ctypes.c_void_p()
        self._check(self.lib.cudaMalloc(ctypes.byref(ptr), ctypes.c_size_t(max(nbytes, 1))), "cudaMalloc")
        return ptr.value

    def free(self, ptr: int) -> None:
        self.lib.cudaFree(ctypes.c_void_p(ptr))

    def copy(self, dst, src, nbytes: int, kind: int) -> None:
        self._check(self.lib.cudaMemcpy(ctypes.c_void_p(dst), ctypes.c_void_p(src), ctypes.c_size_t(nbytes), kind),
                    "cudaMemcpy")

    def sync(self) -> None:
        self._check(self.lib.cudaStreamSynchronize(self.stream), "cudaStreamSynchronize")


class TrtDecoder:
    """TensorRT 10 runtime over model.engine: profile 0 runs the prompt (empty cache), profile 1
    the one-token decode steps (the two profiles dsedge's engine settings define). The KV cache
    stays in device memory between steps: each step's present.* buffers become the next past."""
    name = "tensorrt"

    def __init__(self, folder: Path):
        import numpy as np
        import tensorrt as trt

        self.np, self.trt, self.cuda = np, trt, _Cuda()
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = runtime.deserialize_cuda_engine((Path(folder) / ENGINE_FILE).read_bytes())
        if self.engine is None:
            raise RuntimeError(f"TensorRT {trt.__version__} could not deserialize {folder}/{ENGINE_FILE} "
                               "(built by another TensorRT version or for another GPU?)")
        self.ctx = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if n not in self.inputs]
        self.cache_inputs = [n for n in self.inputs if n.startswith("past_key_values.")]
        self.dtypes = {n: np.dtype(trt.nptype(self.engine.get_tensor_dtype(n))) for n in names}
        self.cache_dims = [tuple(self.engine.get_tensor_shape(n))[1::2] for n in self.cache_inputs]  # (heads, dim)
        self.profile = None

    def _use_profile(self, idx: int) -> None:
        if self.profile != idx:
            self.ctx.set_optimization_profile_async(idx, self.cuda.stream.value)
            self.profile = idx

    def run(self, ids, past=None):
        """past: list of (device pointer, shape) from the previous step, or None."""
        logits, present = self._forward(ids, past)
        return logits[0, -1].astype(self.np.float32), present

    def window_logits(self, ids):
        """ids (1, T), a new sequence (the prefill profile) -> logits (T, V) float32 of every position."""
        logits, present = self._forward(ids, None)
        self.release(present)
        return logits[0].astype(self.np.float32)

    def _forward(self, ids, past):
        """-> (logits (1, T, V) on the host, in the engine's dtype; present: (pointer, shape) per cache tensor)."""
        np = self.np
        t = ids.shape[1]
        plen = 0 if past is None else past[0][1][2]
        self._use_profile(0 if past is None else 1)
        host = {"input_ids": ids.astype(np.int64), "attention_mask": np.ones((1, plen + t), np.int64),
                "position_ids": np.arange(plen, plen + t, dtype=np.int64)[None]}
        owned = []
        for name, arr in host.items():
            arr = np.ascontiguousarray(arr.astype(self.dtypes[name]))
            ptr = self.cuda.malloc(arr.nbytes)
            owned.append(ptr)
            self.cuda.copy(ptr, arr.ctypes.data, arr.nbytes, _Cuda.H2D)
            self.ctx.set_input_shape(name, arr.shape)
            self.ctx.set_tensor_address(name, ptr)
        for i, name in enumerate(self.cache_inputs):
            if past is None:   # an empty cache: a 1-byte placeholder buffer, shape (1, heads, 0, dim)
                ptr, shape = self.cuda.malloc(1), (1, self.cache_dims[i][0], 0, self.cache_dims[i][1])
                owned.append(ptr)
            else:
                ptr, shape = past[i]
            self.ctx.set_input_shape(name, shape)
            self.ctx.set_tensor_address(name, ptr)
        out = {}
        for name in self.outputs:
            shape = tuple(self.ctx.get_tensor_shape(name))
            nbytes = int(np.prod(shape)) * self.dtypes[name].itemsize
            out[name] = (self.cuda.malloc(nbytes), shape, nbytes)
            self.ctx.set_tensor_address(name, out[name][0])
        if not self.ctx.execute_async_v3(self.cuda.stream.value):
            raise RuntimeError("TensorRT execute_async_v3 failed")
        self.cuda.sync()
        lptr, lshape, lbytes = out.pop("logits")
        logits = np.empty(lshape, self.dtypes["logits"])
        self.cuda.copy(logits.ctypes.data, lptr, lbytes, _Cuda.D2H)
        for ptr in owned + [lptr]:
            self.cuda.free(ptr)
        self.release(past)
        present = [(out[n.replace("past_key_values.", "present.")][0], out[n.replace("past_key_values.", "present.")][1])
                   for n in self.cache_inputs]
        return logits, present

    def release(self, past):
        for ptr, _ in past or []:
            self.cuda.free(ptr)


def open_decoder(folder: Path, runtime: str = "auto", accuracy_level: int = 1):
    """accuracy_level: onnxruntime only (TensorRT runs the graph's own precision)."""
    runtime = pick_runtime(folder, runtime)
    if runtime == "tensorrt":
        return TrtDecoder(Path(folder))
    if runtime == "onnxruntime":
        return OrtDecoder(Path(folder), threads=int(os.environ.get("DSEDGE_THREADS", "0")) or None,
                          accuracy_level=accuracy_level)
    raise ValueError(f"unknown runtime {runtime!r} (tensorrt, onnxruntime or auto)")


def generate(decoder, ids: list[int], n: int, eos: int | None = None) -> list[int]:
    """Greedy decoding of n tokens through the KV cache."""
    import numpy as np

    logits, past = decoder.run(np.asarray([ids], np.int64))
    out = []
    for _ in range(n):
        tok = int(logits.argmax())
        out.append(tok)
        if eos is not None and tok == eos:
            break
        logits, past = decoder.run(np.asarray([[tok]], np.int64), past)
    decoder.release(past)
    return out

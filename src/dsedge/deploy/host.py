"""The runner on this host: onnxruntime over the host graph (export/host.py) where the artifact
has one, else over model.onnx; TensorRT where asked and importable."""
from __future__ import annotations

from pathlib import Path

from ..errors import UsageError

GRAPHS = ("auto", "host", "standard")


def open_on_host(folder: Path, runtime: str = "auto", accuracy_level: int = 1, graph: str = "auto",
                 max_length: int | None = None):
    """-> (decoder, which graph it runs). onnxruntime on this host runs the host graph
    (export/host.py: contrib ops, FP32 activations, a preallocated KV cache) where the artifact
    has one, else model.onnx; graph="standard" always model.onnx, "host" refuses without one."""
    import os

    from .device.runtime import HostGraphDecoder, open_decoder, pick_runtime

    if graph not in GRAPHS:
        raise UsageError(f"--graph {graph} is not one of {', '.join(GRAPHS)}", "use --graph auto")
    folder = Path(folder)
    if pick_runtime(folder, runtime) != "onnxruntime" or graph == "standard":
        return open_decoder(folder, runtime, accuracy_level), "model.onnx (the standard graph)"
    from ..host_graph import Unhostable, host_graph

    try:
        path = host_graph(folder, accuracy_level)
    except Unhostable as e:
        if graph == "host":
            raise UsageError(f"{folder} has no host graph: {e}", "use --graph auto or standard") from None
        return open_decoder(folder, runtime, accuracy_level), f"model.onnx (the standard graph; no host graph: {e})"
    threads = int(os.environ.get("DSEDGE_THREADS", "0")) or None
    return (HostGraphDecoder(path, threads=threads, accuracy_level=accuracy_level, max_length=max_length),
            "host graph (MatMulNBits, GroupQueryAttention, FP32 activations; from model.onnx's weights)")

"""Check: onnxruntime sessions, export fidelity, accuracy (ppl, KL, top-1, task), host latency."""
from .accuracy import EvalData, Metrics, evaluate, load_eval
from .fidelity import Fidelity, validate_export
from .latency import Latency, measure_latency
from .session import ACCURACY_LEVEL, OnnxDecoder

__all__ = ["EvalData", "Metrics", "evaluate", "load_eval", "Fidelity", "validate_export", "Latency",
           "measure_latency", "ACCURACY_LEVEL", "OnnxDecoder"]

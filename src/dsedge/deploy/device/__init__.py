"""Code that runs on the device. Shipped into every release as the package `dsedge_device`
(only python3 + numpy + onnxruntime or tensorrt + tokenizers are needed there; dsedge is not).
Modules here use relative imports and the standard library at import time; numpy, onnxruntime,
tensorrt and pynvml are imported inside functions. Never import dsedge or torch from here."""

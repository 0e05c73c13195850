"""The stages of `dsedge build`, one module each, in order: load -> quantize -> export -> validate
-> check -> engine (dsedge.engine.stage, shared with `dsedge engine build`) -> report. Each takes
the typed values the earlier stages returned and returns its own; api.build is their sequence.
The mechanisms live in the packages of the same names (load/, quantize/, export/, check/, ...)."""

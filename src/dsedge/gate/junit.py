"""JUnit XML of a gate result: one test case per metric (failure / skipped as JUnit has them),
so CI systems show each metric as a test."""
from __future__ import annotations

import xml.etree.ElementTree as ET

from .compare import GateResult


def to_junit(res: GateResult, name: str = "dsedge gate") -> str:
    """The suite's time is the gate's measured wall time; the test cases have none (time is optional
    in JUnit): every metric is compared in the same pass, so a per-metric time would be made up."""
    timing = {} if res.seconds is None else {"time": f"{res.seconds:.3f}"}
    suite = ET.Element("testsuite", name=name, tests=str(len(res.rows)), failures=str(len(res.failures)),
                       errors="0", skipped=str(sum(r.status == "skipped" for r in res.rows)), **timing)
    props = ET.SubElement(suite, "properties")
    for k, v in (("candidate", res.candidate.path), ("baseline", res.baseline.path),
                 ("eval_sha256", res.candidate.eval_sha256)):
        ET.SubElement(props, "property", name=k, value=str(v))
    for r in res.rows:
        case = ET.SubElement(suite, "testcase", classname="dsedge.gate", name=r.metric)
        text = (f"{r.label}: candidate {r.show(r.candidate)}, baseline {r.show(r.baseline)}"
                + (f", limit {r.limit}" if r.limit else "") + (f" ({r.note})" if r.note else ""))
        if r.status == "fail":
            ET.SubElement(case, "failure", message=f"{r.label} regressed: {r.show(r.candidate)} "
                                                   f"(limit {r.limit})", type="regression").text = text
        elif r.status == "skipped":
            ET.SubElement(case, "skipped", message=r.note)
        ET.SubElement(case, "system-out").text = text
    root = ET.Element("testsuites", name=name, tests=suite.get("tests"), failures=suite.get("failures"),
                      errors="0", skipped=suite.get("skipped"), **timing)
    root.append(suite)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"

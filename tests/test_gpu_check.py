"""scripts/gpu_check.py --quick on the CPU: every model's fp32 and bf16 parity lines PASS,
every model prints an engine line with an auto batch size and a positive variants/s, and
the summary ends in PASS."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODELS = ("bpnet", "enformer", "borzoi")


def test_gpu_check_quick_passes_on_cpu():
    env = {**os.environ, "PYTHONPATH": str(REPO), "JAX_PLATFORMS": "cpu"}
    env.pop("VEFF_MEMORY_BUDGET", None)
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "gpu_check.py"), "--quick"],
                          capture_output=True, text=True, env=env, timeout=240, cwd=REPO)
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    assert "quick (tiny configs)" in out
    for m in MODELS:
        for prec, tol in (("fp32", "1e-04"), ("bf16", "5e-02")):
            line = re.search(rf"^parity {m} {prec}: max rel err (\S+) \(tol {tol}\) (\w+)$",
                             out, re.M)
            assert line, f"no {prec} parity line for {m}:\n{out}"
            assert line.group(2) == "PASS" and float(line.group(1)) <= float(tol)
        eng = re.search(rf"^engine {m}: auto batch (\d+) .* = ([\d.]+) variants/s; "
                        rf"([\d.]+) GiB host RSS peak$", out, re.M)
        assert eng, f"no engine line for {m}:\n{out}"
        assert int(eng.group(1)) >= 1 and float(eng.group(2)) > 0 and float(eng.group(3)) > 0
        row = re.search(rf"^{m}\s+\S+\s+\S+\s+PASS\s+{eng.group(1)}\s", out, re.M)
        assert row, f"no summary row for {m}:\n{out}"
    assert out.rstrip().endswith("result: PASS")

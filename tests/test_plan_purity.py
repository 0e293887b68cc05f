"""The planner is pure: importing and running it never imports torch."""

from __future__ import annotations

import subprocess
import sys

CODE = """
import sys
from mbrnn.plan import Chain, solve, simulate
for policy in ("store_all", "recompute_all", "chen", "hsm", "ism", "msm", "auto"):
    try:
        plan = solve(Chain(200, 1.0, 3.0), 120.0, policy)
        simulate(plan)
    except ValueError:
        pass
assert "torch" not in sys.modules, "the planner imported torch"
print("pure")
"""


def test_planner_never_imports_torch() -> None:
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "pure"

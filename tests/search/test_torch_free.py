"""The search path never imports torch (nor nni, ray): ``sys.modules["torch"] = None`` makes any import fail."""

import subprocess
import sys
import textwrap

PRELUDE = """
import sys
for name in ("torch", "nni", "ray"):
    sys.modules[name] = None  # any 'import torch' now raises ImportError
import sned.search
from sned.search import SearchConfig, run_search
from sned.search.cli import search_main
from sned.supernet.space import load_space
"""
CHECK = """
loaded = [m for m in sys.modules if m.split(".")[0] in ("torch", "nni", "ray") and sys.modules[m] is not None]
assert not loaded, loaded
print("ok")
"""


def _run(body: str) -> None:
    code = PRELUDE + textwrap.dedent(body) + CHECK
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().endswith("ok")


def test_api_nsga2_and_cli_never_import_torch(tmp_path):
    _run(f"""
        from sned.search.objectives import AnalyticPredictors
        space = load_space("tiny")
        result = run_search(SearchConfig(budget_ms=200, resolutions=(128,), method="nsga2", pop_size=16,
                                         generations=3), AnalyticPredictors(space), space=space, progress=False)
        assert len(result.fronts[128])
        assert search_main(["--budget-ms", "200", "--res", "128", "--analytic", "--out", {str(tmp_path)!r}]) == 0
    """)


def test_cli_with_a_latency_table_and_predictor_never_imports_torch(tmp_path, real_files):
    table, predictor = real_files
    _run(f"""
        assert search_main(["--budget-ms", "200", "--res", "64,128", "--table", {str(table)!r},
                            "--predictor", {str(predictor)!r}, "--out", {str(tmp_path)!r}]) == 0
    """)

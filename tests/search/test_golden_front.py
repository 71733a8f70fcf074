"""The bundled front, pinned: ``sned-search --budget-ms 200 --res 128`` on the bundled default.

Runs the search the way the CLI does (the bundled ``tiny`` space, its latency table and accuracy
predictor, through :func:`~sned.search.engine.run_search`) and compares the front's arch ids and
rounded objectives with ``golden/tiny-200ms-128px.json``. Any change to the space, the bundled
artifacts, the predictors or the search shows here as a diff.

When a change to the front is intended, regenerate the file and commit it with the change::

    .venv/bin/python tests/search/test_golden_front.py      # rewrites golden/tiny-200ms-128px.json
"""

import json
import sys
from pathlib import Path

from sned.search.engine import SearchConfig, run_search
from sned.search.objectives import OBJECTIVES
from sned.supernet.space import load_space

GOLDEN = Path(__file__).with_name("golden") / "tiny-200ms-128px.json"
COMMAND = "sned-search --budget-ms 200 --res 128"
DECIMALS = 2  # the CLI prints one; two catch any real change and no floating-point noise


def bundled_front() -> dict:
    """The front of :data:`COMMAND` as ids and rounded objectives, per resolution."""
    config = SearchConfig(budget_ms=200, resolutions=(128,))  # what the CLI parses COMMAND into
    result = run_search(config, space=load_space(config.experiment), progress=False)
    columns = {name: OBJECTIVES[name][0] for name in config.objectives}
    return {"command": COMMAND, "objectives": columns,
            "fronts": {str(res): [{"arch_id": row["arch_id"],
                                   **{col: round(float(row[col]), DECIMALS) for col in columns.values()}}
                                  for row in front.to_dict("records")]
                       for res, front in result.fronts.items()}}


def test_bundled_front_is_unchanged():
    expected = json.loads(GOLDEN.read_text())
    assert bundled_front() == expected, f"the bundled front changed; if intended: python {Path(__file__).name}"


if __name__ == "__main__":
    GOLDEN.parent.mkdir(exist_ok=True)
    front = bundled_front()
    rows = {res: ",\n".join(f"    {json.dumps(row)}" for row in members) for res, members in front["fronts"].items()}
    fronts = ",\n".join(f'  "{res}": [\n{text}\n  ]' for res, text in rows.items())
    head = {k: v for k, v in front.items() if k != "fronts"}
    GOLDEN.write_text(json.dumps(head)[:-1] + ',\n "fronts": {\n' + fronts + "\n }}\n")  # one member per line
    assert json.loads(GOLDEN.read_text()) == front
    print(f"wrote {GOLDEN}", file=sys.stderr)

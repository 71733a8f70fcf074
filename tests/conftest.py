"""Shared test settings: small thread counts keep the suite steady on a 2-core machine."""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("RAY_DISABLE_USAGE_STATS", "1")

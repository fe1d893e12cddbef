"""tests/slurm/ runs only under `make test-slurm`: it needs root, starts a SLURM test cluster
and runs the CI world twice (minutes), so the default `make test` must not collect it."""

import os

collect_ignore_glob = [] if os.environ.get("INTERPSHARP_TEST_SLURM") == "1" else ["test_*.py"]

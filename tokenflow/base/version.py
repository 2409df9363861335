"""tokenflow's version, where the fast path can read it without importing anything else."""

VERSION = "0.1.0"

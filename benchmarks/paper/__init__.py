"""The papers' evaluation (issue 7): ``python -m benchmarks.paper [--quick | --tiny]``."""

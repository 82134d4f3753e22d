"""Benchmarks of the pipeline's stages; each writes <name>.json and <name>.md under --out.

    python -m lib bench-data --out results/bench      # the data pipeline on 100k generated records
"""

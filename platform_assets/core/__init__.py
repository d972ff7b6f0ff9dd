"""The Dagster-free core both the serving runtime and the control plane build on.

Nothing here imports Dagster, BentoML, the serving runtime or the control plane (``defs/``, ``resources/``,
``governance/``, ``deploy/``), and nothing reads the environment.
"""

"""Model signing and manifests: pure code (no Dagster), shared by the governance assets, the audit CLI and serving."""

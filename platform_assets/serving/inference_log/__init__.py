"""The inference log: every prediction and every outcome (feedback), in a SQL store monitoring can read.

SQLite in WAL mode under ``$PLATFORM_HOME/serving/inference_log.db`` by default, any SQLAlchemy URL by
``CREDIT_RISK_INFERENCE_DB`` (``ServingSettings.inference_db``). Times are naive UTC.

The tables and the readers are the shared contract in ``platform_assets.core.inference_log``; here is
the service's side of it:

* ``writer``: the service's writer. Predictions are written by a background thread in batches (the
  request only enqueues them) and flushed on shutdown; feedback is written synchronously, so the service
  acknowledges an outcome only once it is committed.
"""

"""The online serving layer: what the Bento service in ``bentos/credit_risk`` is made of.

The service class stays a thin shell; the logic lives here so it can be tested and reused without
BentoML (and without Dagster: nothing in this package imports ``dagster``).

Configuration is one typed object, ``settings.ServingSettings``: every ``CREDIT_RISK_*`` variable (and
``PLATFORM_ENV``, ``PLATFORM_HOME``, ``PLATFORM_VERIFY_KEY_FILE``, ``MLFLOW_TRACKING_URI``), read once when a
worker starts and passed to what needs it; its docstring is the table of variables, meanings and defaults.

Signed manifests (``signature``): with a verify key a version is served only when its ``manifest.json`` /
``manifest.sig`` (logged by ``model_manifest`` to the version's MLflow run under ``governance/``) verify over
the model bytes. Without any key, ``local`` serves versions unverified (warning, ``"signature": "unverified:
..."`` in ``/admin/status``); ``staging`` and ``prod`` refuse every version. Live bias gauges: see ``bias``.
"""

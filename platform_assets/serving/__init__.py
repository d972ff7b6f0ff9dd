"""The online serving layer: what the Bento service in ``bentos/credit_risk`` is made of.

The service class stays a thin shell; the logic lives here so it can be tested and reused without
BentoML (and without Dagster: nothing in this package imports ``dagster``).

=================================  ==========================================================  =============
variable                           meaning                                                     default
=================================  ==========================================================  =============
CREDIT_RISK_MAX_BATCH              most applications per ``/predict`` call (more -> 413)        ``1000``
CREDIT_RISK_MAX_BODY_BYTES         largest request body accepted (more -> 413)                  4 KiB per row
CREDIT_RISK_TF_THREADS             TensorFlow (intra-/inter-op) and BLAS threads per worker     ``1``
CREDIT_RISK_INFERENCE_BACKEND      ``auto`` (numpy graph if it verifies, else TensorFlow),      ``auto``
                                   ``numpy`` or ``tensorflow``; see ``models``/``graph``
CREDIT_RISK_WORKERS                worker processes of ``bentoml serve``                        ``1``
CREDIT_RISK_ACCESS_LOG             one log line per request (BentoML's access log)              ``false``
CREDIT_RISK_TRACING                run BentoML's tracing middleware on the API routes           ``false``
CREDIT_RISK_REFRESH_SECONDS        how often the registry is polled for alias/weight changes    ``5``
CREDIT_RISK_MODEL_NAME             MLflow registered model                                      ``default_risk_model``
CREDIT_RISK_INFERENCE_DB           SQLAlchemy URL of the inference log                          PLATFORM_HOME SQLite
CREDIT_RISK_API_KEYS_FILE          JSON key file (hashes only), see ``auth``                    (none)
CREDIT_RISK_API_KEYS               the same JSON document inline                                (none)
CREDIT_RISK_PROTECTED_PATHS        extra paths that need an admin key, e.g. ``/metrics``        (none)
CREDIT_RISK_VERIFY_KEY_FILE        Ed25519 public key that verifies model manifests             see below
CREDIT_RISK_BIAS_WINDOW            predictions in the live bias window                          ``1000``
CREDIT_RISK_BIAS_WINDOW_SECONDS    oldest prediction age in the live bias window                ``600``
CREDIT_RISK_BIAS_MIN_GROUP         predictions a group needs to enter the live DI ratio         ``30``
MLFLOW_TRACKING_URI                the registry the models come from                            see settings
=================================  ==========================================================  =============

Signed manifests (``signature``): with a verify key (``CREDIT_RISK_VERIFY_KEY_FILE``, else
``PLATFORM_VERIFY_KEY_FILE``, else in ``PLATFORM_ENV=local`` the demo key ``$PLATFORM_HOME/keys/verify_key.pem``)
a version is served only when its ``manifest.json`` / ``manifest.sig`` (logged by ``model_manifest`` to the
version's MLflow run under ``governance/``) verify over the model bytes. Without any key, ``local`` serves
versions unverified (warning, ``"signature": "unverified: ..."`` in ``/admin/status``); ``staging`` and
``prod`` refuse every version. Live bias gauges: see ``bias``.
"""

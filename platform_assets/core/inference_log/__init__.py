"""The inference log's contract, shared by the service (which writes it) and the control plane (which reads it).

* ``schema``: the tables, the order of a prediction row's fields, the id and time formats, the default
  location under a platform home, and how to open the store.
* ``reader``: the queries of monitoring, audit and retention.

The service's writer is ``platform_assets.serving.inference_log.writer``.
"""

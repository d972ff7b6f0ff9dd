"""The data plane: what Spark executors (and the assets' own writers) do with the lake, free of Dagster.

``objects`` is the lake as an executor sees it (local folder or S3 through boto3), ``partitions`` the
partition format (Parquet parts + a manifest written last, runs at work marked in flight), ``tasks`` one
Spark task per part with summaries back, ``sources`` and ``raw`` the landing of raw days chunk by chunk,
``tensors`` the featurization job.
"""

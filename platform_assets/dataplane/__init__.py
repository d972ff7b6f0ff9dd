"""The data plane: what Spark executors (and the assets' own writers) do with the lake, free of Dagster.

``objects`` is the lake as an executor sees it (local folder or S3 through boto3), ``partitions`` the
partition format (Parquet parts + a manifest written last), ``tensors`` the featurization job.
"""

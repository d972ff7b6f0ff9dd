"""``python -m platform_assets.migrate upgrade|check|current|downgrade REVISION``: the inference log's schema
(``core/inference_log/migrate.py``) for the environment's table, run by the cluster admin's
``inference-log-migrate`` Job (k8s/dagster) or by hand.

The database is the table's ``inference_db`` (``python -m platform_assets.settings``), its password read from
``PLATFORM_INFERENCE_DB_PASSWORD`` now; the local table's SQLite file is the service's own, which upgrades it
itself.
"""

from __future__ import annotations

import sys

from platform_assets import settings
from platform_assets.core.inference_log import migrate


def main(argv: list[str] | None = None) -> int:
    try:
        url = settings.inference_db_url(settings.load())
    except settings.SettingsError as error:
        print(error, file=sys.stderr)
        return 2
    return migrate.main([*(sys.argv[1:] if argv is None else argv), "--url", url])


if __name__ == "__main__":
    raise SystemExit(main())

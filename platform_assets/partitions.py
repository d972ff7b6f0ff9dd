"""The partitionings: daily data partitions, and one partition per model version."""

from __future__ import annotations

import dagster as dg

from platform_assets.settings import PARTITIONS_START

daily_partitions = dg.DailyPartitionsDefinition(start_date=PARTITIONS_START)

#: One partition per trained model version (``v1``, ``v2``, ...): training adds its version, and every asset
#: about one version (evaluation, reports, manifest, card, Bento, rollout) is materialized for that key.
model_versions = dg.DynamicPartitionsDefinition(name="model_versions")

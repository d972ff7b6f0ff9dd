"""Training reads the feature spec the tensor asset recorded, and refuses partitions that disagree."""

from __future__ import annotations

import dagster as dg
import pytest

from platform_assets.core.model_version import FeatureSpec
from platform_assets.defs.training.assets import tensor_feature_spec
from platform_assets.ml import features

TENSORS = dg.AssetKey("credit_history_tensors")


def record(instance: dg.DagsterInstance, partition: str, metadata: dict[str, object]) -> None:
    instance.report_runless_asset_event(dg.AssetMaterialization(TENSORS, partition=partition, metadata=metadata))


def test_the_recorded_spec_is_read_back() -> None:
    with dg.instance_for_test() as instance:
        for day in ("2026-10-01", "2026-10-02"):
            record(instance, day, {"feature_spec": dg.MetadataValue.json(features.feature_spec())})
        spec = tensor_feature_spec(instance, ["2026-10-01", "2026-10-02"])
    assert spec == FeatureSpec.model_validate(features.feature_spec())
    assert not spec.include_protected


def test_partitions_with_different_specs_are_refused() -> None:
    with dg.instance_for_test() as instance:
        record(instance, "2026-10-01", {"feature_spec": dg.MetadataValue.json(features.feature_spec())})
        protected = features.feature_spec(include_protected=True)
        record(instance, "2026-10-02", {"feature_spec": dg.MetadataValue.json(protected)})
        with pytest.raises(ValueError, match="different feature specs") as error:
            tensor_feature_spec(instance, ["2026-10-01", "2026-10-02"])
    assert "2026-10-01" in str(error.value) and "2026-10-02" in str(error.value)


def test_a_partition_without_a_spec_names_itself() -> None:
    with dg.instance_for_test() as instance:
        record(instance, "2026-10-01", {"dagster/row_count": 10})
        with pytest.raises(ValueError, match="credit_history_tensors 2026-10-01 has no feature_spec"):
            tensor_feature_spec(instance, ["2026-10-01"])

"""Which tensor partitions a model is trained on, how they are split, and whose outcomes it learns from."""

from __future__ import annotations

import dagster as dg
import numpy as np
import pandas as pd
from pydantic import Field

from platform_assets.core import decisions, lake_keys
from platform_assets.core.model_version import LabelSelection, ModelVersion, SplitSpec
from platform_assets.dataplane import partitions as lake_partitions
from platform_assets.dataplane.scoring import DECISION
from platform_assets.ml import reject_inference as ipw
from platform_assets.ml import schema
from platform_assets.ml.dataset import SELECTED_SPLITS, Decisions, ModellingDataset
from platform_assets.ml.features import REASON
from platform_assets.resources.lake import LakeStorage


class TrainingData(dg.ConfigurableResource["TrainingData"]):
    """One definition of the modelling dataset, shared by the CNN, the baselines and the evaluation."""

    window_days: int = Field(default=0, description="Newest N tensor partitions to use; 0 uses all.")
    validation_fraction: float = Field(default=0.1, description="Share of rows for early stopping/thresholds.")
    test_fraction: float = Field(default=0.2, description="Share of rows held out for evaluation.")
    split_seed: int = Field(default=42, description="Seed of the ID hash that assigns rows to splits.")
    max_holdout_rows: int | None = Field(
        default=500_000,
        description=(
            "Most rows in the validation split and in the test split each (both are held in memory by training "
            "and evaluation, about 200 bytes a row); beyond it the extra rows train. None: no cap."
        ),
    )

    def available_partitions(self, lake: LakeStorage) -> list[str]:
        # Committed partitions only: a folder without its manifest is a run that has not finished (or failed).
        partitions = sorted(
            {
                lake_keys.partition_of(k)
                for k in lake.list_keys(lake_keys.TENSORS_PREFIX)
                if k.endswith(f"/{lake_keys.MANIFEST_FILE}")
            }
        )
        if not partitions:
            raise ValueError("no credit_history_tensors partitions in the lake: materialize them first")
        return partitions[-self.window_days :] if self.window_days > 0 else partitions

    def split_spec(self) -> SplitSpec:
        return SplitSpec(
            validation=self.validation_fraction,
            test=self.test_fraction,
            seed=self.split_seed,
            max_holdout_rows=self.max_holdout_rows,
        )

    def open(self, lake: LakeStorage) -> tuple[ModellingDataset, dict[str, str]]:
        """The training window's rows, split (not read yet), and ``{partition: digest}`` of what they are."""
        source, versions = _tensor_parts(lake, self.available_partitions(lake), expected=None)
        return planned(source, self.split_spec()), versions

    def load(self, lake: LakeStorage) -> tuple[pd.DataFrame, dict[str, str]]:
        """Every valid tensor row of the window in memory, and ``{partition: digest}`` (for a few partitions:
        the drift window)."""
        source, versions = _tensor_parts(lake, self.available_partitions(lake), expected=None)
        frames = [b.to_pandas() for piece in range(source.pieces()) for b in source.read(piece)]
        rows = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=[REASON])
        return rows[rows[REASON].isna()].reset_index(drop=True), versions


def select_approved(
    lake: LakeStorage,
    data: ModellingDataset,
    partitions: list[str],
    champion: str | None,
    *,
    reweight: bool,
    seed: int,
    approval_fit_rows: int = ipw.DEFAULT_APPROVAL_FIT_ROWS,
) -> tuple[ModellingDataset, LabelSelection]:
    """``data`` with only the outcomes of the applicants ``champion`` approved in its committed portfolio_scores
    of ``partitions`` (training and validation; the test split keeps every outcome), and what was selected; with
    ``reweight``, the reject-inference weights too (the approval model fitted on a ``seed``-ed sample of at most
    ``approval_fit_rows`` training applicants, then one pass over the training split)."""
    if champion is None:
        raise ValueError(
            "outcomes='approved' keeps the outcomes of the applicants the champion approved, but the registry "
            "has no champion: promote a version first, or train with outcomes='all'"
        )
    chosen, scores_versions = champion_decisions(lake, champion, partitions, expected=None)
    selected = data.selected(chosen)
    weights = ipw.inverse_approval_weights_of(selected, seed=seed, max_fit_rows=approval_fit_rows) if reweight else None
    labelled = selected.rows()
    return selected, LabelSelection(
        outcomes="approved",
        reject_inference="reweight" if reweight else "none",
        selected_by=champion,
        scores_versions=scores_versions,
        labelled_rows={name: labelled[name] for name in SELECTED_SPLITS},
        declined_rows=selected.declined_rows(),
        weights=weights,
    )


def champion_decisions(
    lake: LakeStorage, champion: str, partitions: list[str], expected: dict[str, str] | None
) -> tuple[Decisions, dict[str, str]]:
    """``champion``'s decisions on the clients of ``partitions`` from its committed ``portfolio_scores``, and
    ``{partition: digest}`` of those scores; a day without them fails naming it and how to make them."""
    ids, approved, versions = [], [], {}
    for partition in partitions:
        folder = lake_keys.portfolio_scores(champion, partition)
        if not lake_partitions.is_committed(lake, folder):
            raise ValueError(
                f"training day {partition} has no committed portfolio_scores by the champion {champion} "
                f"({lake.uri(folder)}): run portfolio_scoring_job for {partition} with {champion} (the champion by "
                "default), or train with outcomes='all'"
            )
        what = f"portfolio_scores of {partition} by {champion}"
        manifest = _pinned_manifest(lake, folder, what, None if expected is None else expected[partition])
        versions[partition] = manifest.digest
        for part in manifest.parts:
            for batch in lake_partitions.iter_part_batches(lake, folder, part, (schema.ID, DECISION)):
                ids.append(batch.column(schema.ID).to_numpy())
                approved.append(batch.column(DECISION).to_numpy(zero_copy_only=False) == decisions.APPROVE)
    if not ids:
        raise ValueError(f"portfolio_scores by {champion} of {', '.join(partitions)} hold no clients")
    return Decisions.of(champion, np.concatenate(ids), np.concatenate(approved)), versions


def open_labelled(lake: LakeStorage, record: ModelVersion) -> ModellingDataset:
    """``record``'s rows split as they were, with the outcomes it learnt from (``record.label_selection``): the
    baselines of a version trained on the approved train on the same approved rows. Changed tensors or scores
    fail with "retrain first"."""
    data = open_partitions(lake, record.data_versions, record.split)
    selection = record.label_selection
    if selection.outcomes == "all":
        return data
    assert selection.selected_by is not None  # LabelSelection's validator: recorded with outcomes="approved"
    chosen, _ = champion_decisions(lake, selection.selected_by, record.partitions, expected=selection.scores_versions)
    return data.selected(chosen)


def open_partitions(lake: LakeStorage, data_versions: dict[str, str], split: SplitSpec) -> ModellingDataset:
    """Exactly the partitions in ``data_versions``, split by ``split``; fails if any changed since."""
    return planned(_tensor_parts(lake, sorted(data_versions), expected=data_versions)[0], split)


def planned(source: lake_partitions.PartsSource, split: SplitSpec) -> ModellingDataset:
    return ModellingDataset.planned(source, split.validation, split.test, split.seed, split.max_holdout_rows)


def _tensor_parts(
    lake: LakeStorage, partitions: list[str], expected: dict[str, str] | None
) -> tuple[lake_partitions.PartsSource, dict[str, str]]:
    manifests, versions = {}, {}
    for partition in partitions:
        folder = lake_keys.tensors(partition)
        what = f"credit_history_tensors partition {partition}"
        manifests[folder] = _pinned_manifest(lake, folder, what, None if expected is None else expected[partition])
        versions[partition] = manifests[folder].digest
    # Executors' view of the lake: picklable, and the same objects the lake resource reads.
    return lake_partitions.PartsSource.of(lake.executor_store(), manifests), versions


def _pinned_manifest(lake: LakeStorage, folder: str, what: str, digest: str | None) -> lake_partitions.Manifest:
    """The committed manifest of ``folder``; with ``digest``, refused when the partition changed since."""
    manifest = lake_partitions.read_manifest(lake, folder)
    if digest is not None and manifest.digest != digest:
        raise ValueError(
            f"{what} changed since training (digest {manifest.digest[:12]} != {digest[:12]}): retrain first"
        )
    return manifest

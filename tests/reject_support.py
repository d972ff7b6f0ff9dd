"""A champion's committed portfolio_scores for tests of training on the approved: written to the lake's layout
(``lake_keys.portfolio_scores``) by a rule, without a model or Spark."""

from __future__ import annotations

import numpy as np
import pandas as pd

from platform_assets.core import decisions, lake_keys
from platform_assets.dataplane.partitions import write_partition
from platform_assets.dataplane.scoring import DECISION, MODEL_VERSION, PROBABILITY
from platform_assets.ml import features, schema
from platform_assets.resources.lake import LakeStorage


def champion_risk(tensor_rows: pd.DataFrame) -> np.ndarray:
    """A champion's probability of default: grows with the newest repayment status and falls with the limit
    (in (0, 1)), noisy so that it sometimes approves risky-looking applicants (the weights' positivity)."""
    pay = tensor_rows[schema.PAY_COLUMNS[0]].to_numpy(dtype="float64")
    limit = np.log1p(tensor_rows["LIMIT_BAL"].to_numpy(dtype="float64"))
    noise = np.random.default_rng(len(tensor_rows)).normal(scale=0.8, size=len(tensor_rows))
    return 1.0 / (1.0 + np.exp(-(-1.0 + 1.2 * pay - 0.4 * (limit - limit.mean()) + noise)))


def write_champion_scores(
    lake: LakeStorage, version: str, day: str, tensor_rows: pd.DataFrame, threshold: float
) -> pd.DataFrame:
    """Commit ``version``'s scores of the valid rows of one day's tensor partition; the scores frame back."""
    valid = tensor_rows[tensor_rows[features.REASON].isna()]
    probability = champion_risk(valid)
    scores = pd.DataFrame(
        {
            schema.ID: valid[schema.ID].to_numpy(),
            PROBABILITY: probability.astype("float32"),
            DECISION: decisions.labels(decisions.declines(probability, threshold)),
            MODEL_VERSION: version,
        }
    )
    write_partition(lake, lake_keys.portfolio_scores(version, day), [scores])
    return scores

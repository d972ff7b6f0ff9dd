"""Rescore the portfolio: one run scores one day or a range of days (a backfill is a single run)."""

import dagster as dg

portfolio_scoring_job = dg.define_asset_job(
    name="portfolio_scoring_job",
    selection=dg.AssetSelection.groups("portfolio"),
    description=(
        "Score daily tensor partitions with the champion, or with the candidate the run config names "
        "(ops.portfolio_scores.config.model_version); launch a backfill to score a range of days in one run."
    ),
)

"""The governance gates: blocking, so a model that fails them gets no manifest, card or deployment."""

from typing import Any

import dagster as dg

from platform_assets import model_store
from platform_assets.core import manifest as manifests
from platform_assets.core import signing
from platform_assets.defs.governance.assets import FAIRNESS_JSON, fairness_report, model_manifest, read_report
from platform_assets.resources.governance_gates import FairnessGates
from platform_assets.resources.lake import LakeStorage
from platform_assets.resources.signer import ModelSigner


@dg.asset_check(
    asset=model_manifest,
    blocking=True,
    description=(
        "Re-reads the model artifacts, manifest.json and manifest.sig from the lake and verifies the Ed25519 "
        "signature with the configured public key and every artifact's sha256. Fails on a missing or bad "
        "signature, a wrong key, an altered or missing artifact."
    ),
)
def manifest_verifies(
    context: dg.AssetCheckExecutionContext, lake: LakeStorage, model_signer: ModelSigner
) -> dg.AssetCheckResult:
    info = model_store.load_record(lake, context.partition_key)
    version = info.version
    metadata: dict[str, Any] = {
        "model_version": version,
        "required": "valid Ed25519 signature by the configured key and sha256 match for every artifact",
        "artifacts_expected": dg.MetadataValue.json(sorted(info.artifacts)),
    }
    try:
        public_key = model_signer.verify_key()
        metadata["verify_key_id"] = signing.key_id(public_key)
        body = lake.read_bytes(model_store.version_key(version, manifests.MANIFEST_FILE))
        sig_key = model_store.version_key(version, manifests.SIGNATURE_FILE)
        signature = lake.read_bytes(sig_key) if lake.exists(sig_key) else None
        document = manifests.verify_manifest(body, signature, public_key, model_store.artifact_bytes(lake, info))
    except (FileNotFoundError, signing.SigningKeyError, manifests.ManifestVerificationError) as error:
        return dg.AssetCheckResult(
            passed=False,
            description=str(error),
            metadata={**metadata, "measured": "NOT VERIFIED", "error": type(error).__name__, "message": str(error)},
        )
    return dg.AssetCheckResult(
        passed=True,
        metadata={
            **metadata,
            "measured": "verified",
            "signed_by_key_id": document["signing"]["key_id"],
            "artifacts_verified": dg.MetadataValue.json(
                {name: entry["sha256"] for name, entry in document["artifacts"].items()}
            ),
        },
    )


@dg.asset_check(
    asset=fairness_report,
    blocking=True,
    description=(
        "Blocks when, for any gated protected attribute, the disparate impact ratio (lowest group approval rate / "
        "highest) is below its bound or the equal opportunity difference (TPR gap) is above its bound, with the "
        "whole 90 % bootstrap interval past the bound; warns (without blocking) when only the point estimate is."
    ),
)
def fairness_within_bounds(
    context: dg.AssetCheckExecutionContext, lake: LakeStorage, fairness_gates: FairnessGates
) -> dg.AssetCheckResult:
    info = model_store.load_record(lake, context.partition_key)
    report = read_report(lake, info, FAIRNESS_JSON, "fairness_report")
    violations, uncertain, unmeasurable = [], [], []
    measured: dict[str, Any] = {}
    for attribute in fairness_gates.attributes:
        if attribute not in report["attributes"]:
            raise ValueError(
                f"FairnessGates names attribute {attribute!r}, but the fairness report has "
                f"{sorted(report['attributes'])}: fix the gate configuration"
            )
        summary = report["attributes"][attribute]["summary"]
        bounds = (
            ("disparate_impact_ratio", fairness_gates.min_disparate_impact_ratio, "<"),
            ("equal_opportunity_difference", fairness_gates.max_equal_opportunity_difference, ">"),
        )
        for name, bound, worse in bounds:
            value, interval = summary[name], summary.get(f"{name}_interval")
            if value is None:
                unmeasurable.append(f"{attribute}: {name.replace('_', ' ')}")
                continue
            measured[f"{attribute}_{name}"] = value
            if interval is not None:
                measured[f"{attribute}_{name}_90pct_interval"] = f"{interval[0]:.3f}..{interval[1]:.3f}"
            breached = value < bound if worse == "<" else value > bound
            if not breached:
                continue
            message = f"{attribute}: {name.replace('_', ' ')} {value:.3f} {worse} {bound}"
            # Blocking needs the whole 90 % interval past the bound; otherwise the test set is too small
            # to tell a disparity from noise, and the check warns instead.
            certain = interval is None or (interval[1] < bound if worse == "<" else interval[0] > bound)
            if certain:
                violations.append(message)
            else:
                uncertain.append(f"{message} (90 % interval {interval[0]:.3f}..{interval[1]:.3f} includes the bound)")
    ratios = [v for k, v in measured.items() if k.endswith("_disparate_impact_ratio")]
    gaps = [v for k, v in measured.items() if k.endswith("_equal_opportunity_difference")]
    blocked = bool(violations) or bool(unmeasurable and fairness_gates.fail_when_unmeasurable)
    passed = not blocked and not uncertain
    metadata: dict[str, Any] = {
        "model_version": info.version,
        "min_disparate_impact_ratio": fairness_gates.min_disparate_impact_ratio,
        "max_equal_opportunity_difference": fairness_gates.max_equal_opportunity_difference,
        "attributes": dg.MetadataValue.json(list(fairness_gates.attributes)),
        **measured,
        "violations": dg.MetadataValue.json(violations),
        "within_noise": dg.MetadataValue.json(uncertain),
        "unmeasurable": dg.MetadataValue.json(unmeasurable),
        "fail_when_unmeasurable": fairness_gates.fail_when_unmeasurable,
    }
    if ratios:
        metadata["lowest_disparate_impact_ratio"] = min(ratios)
    if gaps:
        metadata["largest_equal_opportunity_difference"] = max(gaps)
    return dg.AssetCheckResult(
        passed=passed,
        severity=dg.AssetCheckSeverity.ERROR if blocked else dg.AssetCheckSeverity.WARN,
        description="; ".join(violations + uncertain + unmeasurable) or "within bounds",
        metadata=metadata,
    )

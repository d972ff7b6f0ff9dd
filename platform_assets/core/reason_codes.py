"""The adverse-action reason-code table, and the reason section a model version records.

A declined applicant is told the principal reasons (Regulation B / ECOA; CFPB Circular 2022-03). Each
reason is one named group of raw application fields (``ml.reason_codes.GROUPS``); this table gives the
group its stable code and the sentence the applicant reads. The table is versioned: a model version
records the table, the groups' fields and the reference applicant it was explained against
(``ReasonCodes``, in ``ModelVersion.reason_codes`` and the signed manifest), so a reason given today
can be traced to its exact wording and definition later.

Change a text or a code: bump ``TABLE_VERSION``. Codes are never reused for another meaning.
"""

from __future__ import annotations

import itertools
from typing import Final

from pydantic import BaseModel, ConfigDict, Field, model_validator

#: Version of ``REASON_TABLE``; recorded in every model version that uses it.
TABLE_VERSION: Final = "1"
#: A decline returns at most this many reasons, the largest first.
MAX_REASONS: Final = 4

#: Group (``ml.reason_codes.GROUPS``) -> (code, text the applicant reads).
REASON_TABLE: Final[dict[str, tuple[str, str]]] = {
    "recent_delay": ("R01", "Payment delayed in the most recent month"),
    "delay_history": ("R02", "History of delayed or missed payments in the previous five months"),
    "current_balance": ("R03", "Current balance too high for the credit limit"),
    "balance_history": ("R04", "Balances in the previous five months too high for the credit limit"),
    "recent_repayment": ("R05", "Amount repaid in the most recent month too low for the balance"),
    "repayment_history": ("R06", "Amounts repaid in the previous five months too low for the balances"),
    "credit_limit": ("R07", "Credit limit too low for the balances and repayments"),
}


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ReasonCode(_Frozen):
    """One reason: a group of raw application fields, its code and its text."""

    code: str = Field(pattern=r"^R[0-9]{2}$", description="Stable adverse-action code, e.g. 'R01'.")
    group: str = Field(min_length=1, description="Name of the field group (ml.reason_codes.GROUPS).")
    text: str = Field(min_length=1, description="What the applicant is told.")
    fields: tuple[str, ...] = Field(min_length=1, description="Raw application fields of the group.")


class ReferenceApplicant(_Frozen):
    """The applicant every decline is compared with: raw field values (whole numbers, NT$ or status codes)."""

    rule: str = Field(description="How the values were derived (which rows, which statistic).")
    values: dict[str, int] = Field(min_length=1, description="Raw field -> value, for every grouped field.")
    probability: float = Field(ge=0, le=1, description="The model's probability of default for the reference.")
    rows: int = Field(gt=0, description="Training rows the values were derived from.")


class ReasonCodes(_Frozen):
    """What a model version's reasons are computed with: the table, its groups and the reference applicant."""

    table_version: str
    codes: tuple[ReasonCode, ...] = Field(min_length=1, max_length=10, description="One per group; 2^k coalitions.")
    reference: ReferenceApplicant
    max_reasons: int = Field(default=MAX_REASONS, gt=0, description="Reasons returned per decline, at most.")

    @model_validator(mode="after")
    def _groups_are_disjoint(self) -> ReasonCodes:
        for attribute in ("code", "group"):
            names = [getattr(c, attribute) for c in self.codes]
            if len(set(names)) != len(names):
                raise ValueError(f"reason {attribute}s must be unique, got {names}")
        for a, b in itertools.combinations(self.codes, 2):
            if shared := set(a.fields) & set(b.fields):
                raise ValueError(f"groups {a.group!r} and {b.group!r} share field(s) {sorted(shared)}")
        missing = sorted({f for c in self.codes for f in c.fields} - set(self.reference.values))
        if missing:
            raise ValueError(f"the reference applicant has no value for {missing}")
        return self

    @property
    def groups(self) -> tuple[str, ...]:
        return tuple(c.group for c in self.codes)

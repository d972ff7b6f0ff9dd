"""The raw credit-history schema: the UCI "default of credit card clients" columns and code sets.

One source of truth for column names, dtypes and the value ranges that validation enforces.
"""

from __future__ import annotations

from typing import Final

TARGET: Final = "default payment next month"
ID: Final = "ID"

#: Months in the history; index 0 is the most recent month (September 2005 in the UCI data).
N_MONTHS: Final = 6

#: Repayment status per month, most recent first (the UCI file skips PAY_1).
PAY_COLUMNS: Final = ("PAY_0", "PAY_2", "PAY_3", "PAY_4", "PAY_5", "PAY_6")
BILL_COLUMNS: Final = tuple(f"BILL_AMT{i}" for i in range(1, N_MONTHS + 1))
PAY_AMT_COLUMNS: Final = tuple(f"PAY_AMT{i}" for i in range(1, N_MONTHS + 1))

#: Attributes used only for the fairness audit; never model inputs by default.
PROTECTED_COLUMNS: Final = ("SEX", "EDUCATION", "MARRIAGE", "AGE")

FEATURE_COLUMNS: Final = ("LIMIT_BAL", *PAY_COLUMNS, *BILL_COLUMNS, *PAY_AMT_COLUMNS)
RAW_COLUMNS: Final = (
    ID,
    "LIMIT_BAL",
    "SEX",
    "EDUCATION",
    "MARRIAGE",
    "AGE",
    *PAY_COLUMNS,
    *BILL_COLUMNS,
    *PAY_AMT_COLUMNS,
    TARGET,
)

#: Every raw column is an integer in the UCI file (amounts are whole New Taiwan dollars).
INTEGER_COLUMNS: Final = RAW_COLUMNS

#: Code sets as they occur in the real data, undocumented codes included (see shared/data/SOURCES.md).
SEX_CODES: Final = frozenset({1, 2})
EDUCATION_CODES: Final = frozenset({0, 1, 2, 3, 4, 5, 6})
MARRIAGE_CODES: Final = frozenset({0, 1, 2, 3})
#: -2 no consumption, -1 paid in full, 0 revolving credit, 1..9 months of delay.
PAY_CODES: Final = frozenset(range(-2, 10))
TARGET_CODES: Final = frozenset({0, 1})
AGE_RANGE: Final = (18, 100)

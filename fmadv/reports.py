"""Plain-text renderings of result tables."""

from __future__ import annotations

import pandas as pd
from pandas.api.types import is_numeric_dtype


def markdown_table(frame: pd.DataFrame, digits: int = 4) -> str:
    """A Markdown table of ``frame``: numeric columns right-aligned, floats rounded."""
    header = "| " + " | ".join(str(c) for c in frame.columns) + " |"
    rule = "|" + "|".join("---:" if is_numeric_dtype(frame[c]) else "---" for c in frame.columns)
    lines = [header, rule + "|"]
    for _, row in frame.iterrows():
        cells = [f"{v:.{digits}f}" if isinstance(v, float) else str(v) for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)

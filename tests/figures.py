"""Figures (timings, sizes) that tests measure and the run prints at the end, not assertions."""

from __future__ import annotations

FIGURES: list[str] = []


def record(line: str) -> None:
    FIGURES.append(line)

"""Run-wide hooks: print the figures the tiers measured after the test summary."""

from tests.figures import FIGURES


def pytest_terminal_summary(terminalreporter):
    if FIGURES:
        terminalreporter.section("figures (measured, not asserted)")
        for line in FIGURES:
            terminalreporter.write_line(line)

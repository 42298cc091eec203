"""`sea report DIR` (build.py: the page and its sections; tables.py, helpful.py, training_data.py, charts.py,
html.py) and `sea tradeoff` (tradeoff.py)."""

from sea_align.report.build import run_report
from sea_align.report.helpful import helpfulness, load_samples

__all__ = ["helpfulness", "load_samples", "run_report"]

"""The evaluation report: labels against ground truth as one self-contained HTML page with embedded plots.

``evaluation`` computes the figures (no plotting), ``figures`` draws them (matplotlib, PNG bytes), ``songs``
analyses a few songs from their audio (timeline, GAN translations), ``ablation`` reads the GAN ablation
results, ``html`` writes the page, and ``build`` puts it together (:func:`build_report`).
"""

from genre_core.report.build import Report, ReportRequest, build_report
from genre_core.report.evaluation import clean, evaluate

__all__ = ["Report", "ReportRequest", "build_report", "clean", "evaluate"]

"""Reports: read run folders and sweeps, draw figures, build the comparison and claims tables. Nothing trains here.

runs        one run and its data (notebooks 01, 02)        fisher      Eq. 3 / Eq. 4 (notebook 03)
attention   fusion attention, Eq. 9 (notebook 04)          projection  Eq. 5 (notebook 05)
reload      a run's method back from its checkpoint         display     figures in JupyterLab and static HTML
collect     a sweep's results folder, checked and read      summary     its tables (summary.md / .csv, claims.md)
readme_block  the README's results block of a sweep         paper_tables  the papers' tables and figures (notebook 06)
"""
from frkit.reports.display import show

__all__ = ["show"]

"""Reports: read run folders and sweeps, draw figures, build the comparison and claims tables. Nothing trains here.

runs        one run and its data (notebooks 01, 02)        fisher      Eq. 3 / Eq. 4 (notebook 03)
attention   fusion attention, Eq. 9 (notebook 04)          projection  Eq. 5 (notebook 05)
display     figures in JupyterLab and static HTML      statistics  paired tests, Holm, TOST, power (claims)
collect     a sweep's results folder, checked and read      summary     its tables (summary.md / .csv, claims.md)
readme_block  the README's results block of a sweep         paper_tables  the papers' tables and figures (notebook 06)
claims      both papers' claims checked on a sweep
(A run's method reloaded from its checkpoint is frkit.reload: it builds models, so it sits on the execution side.)
"""

from frkit.reports.display import show

__all__ = ["show"]

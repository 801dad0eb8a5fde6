"""Show a plotly figure so that it draws at full size both in JupyterLab and in the static HTML report, offline.

One display bundle carries two representations of the figure:

* ``application/vnd.plotly.v1+json``: JupyterLab draws this with the plotly extension that the plotly
  package installs (an HTML fragment would be sized to 100% of a parent with no height there, and vanish);
* ``text/html``: what nbconvert's HTML report shows (it ignores the plotly mimetype), a div of fixed height
  whose script calls the plotly.js embedded once, in the first figure a kernel shows, so the report stays
  self-contained without a CDN and carries plotly.js once however many figures it has.
"""

from __future__ import annotations

import plotly.graph_objects as go
import plotly.io as pio

PLOTLY_MIMETYPE = "application/vnd.plotly.v1+json"
DEFAULT_HEIGHT = 480  # px, where a figure sets none
_plotly_js_sent = False


def figure_bundle(fig: go.Figure, include_plotlyjs: bool) -> dict:
    """The mime bundle :func:`show` displays (exposed for tests)."""
    height = fig.layout.height or DEFAULT_HEIGHT
    html = pio.to_html(
        fig,
        include_plotlyjs=include_plotlyjs,
        full_html=False,
        default_height=f"{height}px",
        default_width="100%",
        config={"responsive": True},
    )
    return {
        PLOTLY_MIMETYPE: fig.to_plotly_json(),
        "text/html": html,
        "text/plain": f"<plotly figure: {fig.layout.title.text or ''}>",
    }


def show(fig: go.Figure) -> None:
    """Display ``fig`` (JupyterLab: the plotly mimetype; static report: HTML with plotly.js embedded once)."""
    global _plotly_js_sent
    from IPython.display import display

    display(figure_bundle(fig, include_plotlyjs=not _plotly_js_sent), raw=True)
    _plotly_js_sent = True

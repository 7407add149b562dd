"""Stage 6: the report of a run, one self-contained HTML file.

The template ships inside the package, so an installed i2peval renders reports too.
"""

from importlib.resources import files

REPORT_TEMPLATE = files(__name__) / "templates" / "report.html.j2"

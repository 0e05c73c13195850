"""Report: report.json and report.md of an artifact, and the summary table the CLI prints."""
from .render import summary_rows, to_markdown, write_reports

__all__ = ["summary_rows", "to_markdown", "write_reports"]

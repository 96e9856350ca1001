"""The results and their outputs: ``FitResult`` and ``BatchResult`` (``results``), the
text report, plots, the run directory and its atomic writes."""

"""What a run reports: per-class and shot-group metrics (torchmetrics), the results file, the comparison table,
its plots, FLOPs for the cost columns, and the loggers (W&B offline unless logged in).

``longtail.report`` (the command line) gathers these over a sweep's runs.
"""

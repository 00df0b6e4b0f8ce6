"""Watching a registered model on new data: its reference data through lineage
(``reference``), the monitoring run (``monitor``) and the retrain it triggers (``retrain``)."""

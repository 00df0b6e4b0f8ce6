"""Everything that talks to MLflow: the run tree (``runs``), artifacts, the step cache,
trial runs, the registry and its lock, model logging and the one safe loader (``model_io``),
lineage, and closing dead runs (``hygiene``). ``remote`` checks the store without MLflow."""

"""Pure domain code: data, cleaning, features, modeling, evaluation, the gate, drift,
tuning and the batch-scoring checks. Nothing here imports mlflow or hydra (a test keeps it
so); it takes the typed config schemas (``mlcycle.config.schema``) as arguments."""

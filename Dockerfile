# The image mlcycle runs in on a cluster: Kubeflow Pipelines' components
# (orchestration/kfp_pipeline.py) and the base of `mlflow run deploy/kubernetes --backend
# kubernetes --build-image` (deploy/kubernetes/MLproject's docker_env; MLflow adds that folder
# at /mlflow/projects/code, the working directory there). This checkout's mlcycle with its
# dependencies, and kfp for the components' runner (`python3 -m kfp.dsl.executor_main`; the
# components install nothing when they start).
#   KFP:        docker build -t <registry>/mlcycle:0.1.0 . && docker push <registry>/mlcycle:0.1.0
#   Kubernetes: docker build -t mlcycle:0.1.0 .   (MLflow pushes its own image built on it)
# Not built in this project's CI (no Docker daemon there); its install step is the one
# scripts/kfp_venv.sh runs, which CI does, and the pipelines run with that environment.
# mlcycle reads conf/ from the checkout it is installed from, so the checkout is copied whole.
FROM python:3.11-slim
WORKDIR /opt/mlcycle
COPY pyproject.toml README.md MLproject conda.yaml ./
COPY conf ./conf
COPY src ./src
RUN pip install --no-cache-dir -e . "kfp==2.17.3"

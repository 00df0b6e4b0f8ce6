"""Built-in data sources: the e-commerce generator and scikit-learn's bundled datasets."""

from mlcycle.datasets.bundled import BUNDLED, load_bundled
from mlcycle.datasets.ecommerce import generate_sessions

__all__ = ["BUNDLED", "generate_sessions", "load_bundled"]

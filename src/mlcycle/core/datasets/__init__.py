"""Built-in data sources: the e-commerce generator and scikit-learn's bundled datasets."""

from mlcycle.core.datasets.bundled import BUNDLED, load_bundled
from mlcycle.core.datasets.ecommerce import generate_sessions

__all__ = ["BUNDLED", "generate_sessions", "load_bundled"]

"""A stand-in for scikit-learn, just enough for the README's namespace-pollution example (no real sklearn needed)."""

class NotFittedError(ValueError, AttributeError):
    """As in scikit-learn: raised when an estimator is used before fitting."""

# README "Limit the memory usage in a sequential manner". Preamble: Model, X, y and the `model` the README's
# function returns; postamble prints what came back.
class Model:  # preamble
    def __init__(self, weights=None):
        self.weights = weights


X, y = [[0.0, 1.0], [1.0, 0.0]], [1, 0]
model = Model(weights=list(range(1000)))

from pynish import limit, MemoryLimitException, WallTimeoutException


def train_memory_hungry_model(X, y) -> Model:
    # ... do some thing
    return model

model_trainer = limit(
    train_memory_hungry_model,
    memory=(500, "MB"),
    wall_time=(1.5, "h")  # 1h30m
)

try:
    model = model_trainer(X, y)
except (WallTimeoutException, MemoryLimitException):
    model = None

print("RESULT", type(model).__name__, None if model is None else sum(model.weights))  # postamble

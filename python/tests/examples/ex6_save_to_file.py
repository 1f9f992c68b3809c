# README "If returning very large items, prefer to save them to file first". Two fixes, without which the README's
# code cannot run at all: the stray `:` after `limit(...)` (a SyntaxError) is dropped, and the placeholder `...` for
# the model is a small Model (Ellipsis has no .train()). MemoryLimitException is imported in the preamble (the
# README uses it without importing it). Runs in the test's temporary directory.
import pickle as _pickle  # preamble


class Model:
    def train(self):
        self.weights = [i * i for i in range(1000)]


from pynish import MemoryLimitException

from pathlib import Path
import pickle

from pynish import limit

def train_gpt3(save_path: Path) -> bool:
    gpt3 = Model()
    gpt3.train()
    with save_path.open('wb') as f:
        pickle.dump(gpt3, f)

    return True

path = Path('gpt3.model')
trainer = limit(train_gpt3, memory=(1_000_000, "gb"))

try:
    trainer(save_path=path)

    with path.open("rb") as f:
        gpt3 = pickle.load(f)

except MemoryLimitException as e:
    ...

print("RESULT", sum(gpt3.weights))  # postamble

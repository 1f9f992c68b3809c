# README "You can safely raise errors from inside your function and the same kind of error will be reraised".
# Postamble: report that the except clause ran.
caught = []  # preamble

from pynish import limit


def f():
    raise ValueError()

limited_f = limit(f)

try:
    limited_f()
except ValueError as e:
    ... # do what you need
    caught.append(type(e).__name__)  # postamble: the except clause ran

print("RESULT", caught)  # postamble

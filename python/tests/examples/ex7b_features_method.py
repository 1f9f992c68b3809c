# README "To check if a feature is supported": its second part. As written the README cannot run it: the loop
# before it rebinds `limit` to a str, and `...` is not a valid argument. So here `limit` is the real one and `...`
# is `wall_time=5`; the `if` body (`...`) is kept. Postamble prints the answer.
from pynish import limit


def f():  # preamble
    return 1


limited_f = limit(f, wall_time=5)
if not limited_f.supports("memory"):
    ...

print("RESULT", limited_f.supports("memory"), limited_f())  # postamble

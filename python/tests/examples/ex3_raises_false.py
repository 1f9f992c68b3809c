# README "Passing raises=False ... will return EMPTY". The README's `if` body is only a comment, which Python cannot
# run; the postamble line below completes that block (prints), and a last line reports the outcome.
from pynish import limit, EMPTY

def f():
    raise ValueError()

limited_f = limit(f, wall_time=(2, "m"), raises=False)
result = limited_f()

if result is not EMPTY:
    # ...
    print("RESULT not EMPTY", repr(result))  # postamble: completes the README's block
print("RESULT", "EMPTY" if result is EMPTY else repr(result))  # postamble

"""The call: one limited call carried out, below the public face and above the OS plumbing (``pynish._os``).

How a call is launched in each context (``launch``), the child's side that runs the function (``child``), the
forkserver (``forkserver``), the caller's state and main module a fresh child takes on (``mainmodule``), the pipes
the call and its outcome travel through (``stream``), the fork context's native helper (``native``) and the
pynish binary (``binary``). A module here imports from this layer, ``pynish._os`` and ``pynish.exceptions`` only.
Nothing is imported here: a fresh child pays only for the modules it uses.
"""

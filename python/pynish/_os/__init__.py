"""The OS plumbing: process-wide resources that every call leans on, and that know nothing of calls' contents.

A call's private folder (``folder``), the caller's lifeline (``lifeline``), a terminating signal to a caller with
calls running (``signals``), the descriptors the caller alone owns (``owned_fds``), waiting on descriptors
(``poll``), what starting a fresh interpreter needs (``interpreter``) and the working directory at import
(``startdir``). A module here imports from this layer and ``pynish.exceptions`` only.
Nothing is imported here: a fresh child pays only for the modules it uses.
"""

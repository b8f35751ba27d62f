"""The core: the record spec, framing, compression, sources, the input list, errors,
and the system calls both engines' processes share (``core.system``).

Imports nothing of mpevents outside ``core`` and starts no process: everything
here is tested on its own. ``failpoints`` (test-only hooks, inert unless
``MPEVENTS_FAILPOINTS`` is set) lives here because every layer may fire one.
"""

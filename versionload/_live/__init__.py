"""
The live wing: front-ends that reload while a program runs.

``watch`` (files changed on disk), ``control`` (the socket of ``versionload run``),
``cli`` (the ``versionload`` command) and ``ipython`` (``%load_ext versionload``).
They reach the core only through `versionload._tracker` (the door) and the bottom
modules (errors, events, records, input checks); ``tests/test_layers.py`` keeps it so.
"""

"""
The plugin wing: entry-point plugins reloaded and rolled back as units.

Behind the public `versionload.plugins`. Like the live wing, it reaches the core only
through `versionload._tracker` (the door) and the bottom modules; ``tests/test_layers.py``
keeps it so.
"""

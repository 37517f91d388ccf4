"""
The fleet wing: one reload, rollback or undo reaching every process of a group, over Redis.

Uses the core only through `Tracker`'s public methods and the bottom modules
(``_errors``, ``_events``). The public face is `versionload.fleet`; nothing here is
imported by ``import versionload``, and only ``redisconn`` imports the ``redis`` client.
"""

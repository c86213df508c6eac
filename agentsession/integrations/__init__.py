"""Framework integrations: agentsession inside an app that calls its agent itself.

``maf``: Agent Framework's ``HistoryProvider`` and ``SessionStore``; ``ag2``: AG2 v1's
``ag2.history.Storage``. Each imports its framework when imported; ``_turns`` is the one place
they take and release a conversation's turn lease.
"""

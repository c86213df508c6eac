"""Web adapters (imported as ``agentsession.adapters``): ASGI, WSGI and Flask."""

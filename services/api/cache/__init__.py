"""The api side of the response cache: the pure-ASGI middleware that answers before
routing (``middleware``), the table of cached routes it matches against
(``route_table``), and the per-process assembly of ``services.core.cache``
(``assembly``)."""

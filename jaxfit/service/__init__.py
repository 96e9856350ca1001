"""``python -m jaxfit serve``: the HTTP service (needs the ``serve`` extra).

``app`` wires the ASGI app; ``handlers`` answer the routes from one explicit
``State``; ``guard`` checks auth and limits and maps every error to a response;
``batcher`` batches concurrent fit requests; ``metrics`` counts them.
"""

"""The archivist's search page and its JSON API (``groundzero serve``).

``config`` (ServeConfig) -> ``state`` (the snapshot in service, hot reload) -> ``query``
(filters, grouping, paging) and ``media`` (byte ranges, thumbnails) -> ``app`` (routes,
``create_app``) -> ``server`` (uvicorn). ``guards`` checks UTF-8 and the access token;
``static/`` holds the page (plain HTML + JS, no build step, nothing fetched from the network).
"""

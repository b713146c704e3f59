"""Kitchen queries over HTTP, one idea a module: ``routes`` (the search and one
kitchen), ``schemas`` (what they answer, and its JSON written straight from the read
model), ``search`` (the search's query string, read one way by the route and the fast
path) and ``fast_reads`` (the middleware answering the hottest reads before routing)."""

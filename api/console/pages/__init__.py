"""The console's pages: GET routes that read the read models (and, for an aggregate's
history, the event store), as the API's query routes do."""

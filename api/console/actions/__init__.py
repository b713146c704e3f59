"""The console's actions: POST routes, each a form checked for its token that runs a
command as the API's command routes do, then sends the browser to the page that shows
its effect (see ``api.console.rendering``)."""

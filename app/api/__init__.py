"""The API: routes, request and response schemas, the V2 protocol, pictures and the web page."""

"""The HTTP API's routes, one APIRouter per resource (pictrace.api assembles them): site (the page, sign-in
config, health), search (search and compare), images (an indexed image and its thumbnail), uploads; models holds
the request and response models they share, deps how a route reaches the settings and the service, query how a
search's or compare's body becomes a SearchQuery."""

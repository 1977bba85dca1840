"""The API's routes, one module per resource, over the dependencies in ``deps``."""

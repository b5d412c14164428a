"""genserve: the FastAPI service that serves models exported by `training`."""

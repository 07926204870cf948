"""The Dagster layer: it calls the maths, the sources and the store; nothing calls it."""

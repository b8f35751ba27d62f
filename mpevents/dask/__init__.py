"""The Dask engine: the client side, and the tasks that run on Dask workers."""

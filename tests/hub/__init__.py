"""A local stand-in for the Hugging Face Hub (tests only): `server.py` speaks the hub's HTTP API,
`repos.py` builds tiny repositories with the real file layouts of the repos the product downloads."""

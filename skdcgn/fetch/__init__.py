"""`skdcgn fetch`: the real assets (CGN teachers, MNIST digits, textures) into their git-ignored folders, each
checked against its sha256: the catalog of what and from where, writing verified files, HTTP with resume, and
copies from a local folder (`--from`). The entry point is `skdcgn.fetch.fetching.fetch`."""

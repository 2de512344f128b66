"""Stage 1, inputs: finding a dataset's images (folder trees, manifests, drops) and decoding them canonically."""

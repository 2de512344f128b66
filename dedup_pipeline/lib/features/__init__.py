"""Stage 2, features: what is derived from each decoded image once (digests, perceptual hashes,
thumbnails and their view hashes, embeddings), and the extraction that spreads it over workers."""

"""The pure core: audio decoding, exact framing, the model registry, HLS playlists and clocks,
annotation tables, statuses. No Beam pipeline stage and no TensorFlow here; every layer above
may import it.
"""

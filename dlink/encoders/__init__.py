"""The audio and text encoders: the Encoder interface (base), LAION-CLAP (laion), the embedded CLAP
trained offline (embedded_clap), and load_encoder / embed_split with the array cache (registry)."""

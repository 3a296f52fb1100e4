"""Measuring and reporting: modality-gap metrics (gap), caption metrics (metrics), bootstrap
intervals (stats), mean ± std tables (tables) and figures (plots)."""

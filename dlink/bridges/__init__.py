"""The audio-to-text bridges: the Bridge contract and fit loop (base), the residual-MLP denoiser
(denoiser), the diffusion schedule and losses (diffusion), Diffusion-Link (diffusion_link) and the
baselines (baselines)."""

"""KeyPointDiffuser: unsupervised 3D keypoint learning via latent diffusion."""
__version__ = "0.1.0"

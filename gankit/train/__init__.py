"""Training: the generic trainer loop, GAN losses, checkpoints and the run directory."""

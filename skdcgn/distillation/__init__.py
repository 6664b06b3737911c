"""Distilling one mechanism: the student and its discriminator, the objective, the GAN step, the loop."""

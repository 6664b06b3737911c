"""SKDCGN: distill a black-box Counterfactual Generative Network into one small student GAN per mechanism."""

IMS = ("shape", "texture", "background")

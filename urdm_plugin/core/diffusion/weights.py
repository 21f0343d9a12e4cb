"""Shipped prior weights: safetensors file + JSON model card with its SHA-256.

Loading never unpickles code (safetensors holds tensors only) and refuses a file whose
hash does not match the card, so a truncated or swapped file is caught before use.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from ..errors import MethodUnavailableError

WEIGHTS_DIR = Path(__file__).resolve().parents[2] / "weights"
WEIGHTS_FILE = "abundance_prior.safetensors"
CARD_FILE = "model_card.json"


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_card(weights_dir: Path = WEIGHTS_DIR) -> dict:
    card_path = Path(weights_dir) / CARD_FILE
    if not card_path.is_file():
        raise MethodUnavailableError(
            f"The URDM prior's model card {card_path} is missing",
            "Reinstall the plugin, or rebuild the prior with 'make prior'.",
        )
    return json.loads(card_path.read_text(encoding="utf-8"))


def load_prior(weights_dir: Path = WEIGHTS_DIR, device: str = "cpu"):
    """The shipped UNet in eval mode on ``device``, after checking the card's SHA-256."""
    from safetensors.torch import load_file

    from .unet import AbundanceUNet

    weights_dir = Path(weights_dir)
    card = read_card(weights_dir)
    path = weights_dir / card.get("weights_file", WEIGHTS_FILE)
    if not path.is_file():
        raise MethodUnavailableError(
            f"The URDM prior weights {path} are missing",
            "Reinstall the plugin, or rebuild the prior with 'make prior'.",
        )
    digest = sha256_of(path)
    if digest != card.get("sha256"):
        raise MethodUnavailableError(
            f"The URDM prior weights {path.name} do not match their model card (SHA-256 {digest[:12]}… "
            f"instead of {str(card.get('sha256'))[:12]}…)",
            "The file is damaged or was replaced: reinstall the plugin or rebuild with 'make prior'.",
        )
    model = AbundanceUNet(**card["architecture"])
    model.load_state_dict(load_file(str(path), device="cpu"))
    return model.to(device).eval(), card


def save_prior(model, weights_dir: Path, card: dict) -> Path:
    """Write ``model``'s weights as safetensors and ``card`` (hash added) as JSON."""
    from safetensors.torch import save_file

    weights_dir = Path(weights_dir)
    weights_dir.mkdir(parents=True, exist_ok=True)
    path = weights_dir / WEIGHTS_FILE
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(path))
    card = dict(card, weights_file=WEIGHTS_FILE, sha256=sha256_of(path), architecture=model.config)
    (weights_dir / CARD_FILE).write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    return path

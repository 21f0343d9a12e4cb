"""Shipped prior weights: safetensors file + JSON model card with its SHA-256.

The card records the hash as ``"digest": "sha256:<hex>"``: a bare 64-digit hex string is
what secret scanners (detect-secrets, run by the plugin repository on upload) take for a
key; the algorithm-prefixed form is not flagged. An older card's ``"sha256"`` is still read.

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
DIGEST_PREFIX = "sha256:"


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def card_digest(card: dict) -> str:
    """The weights' SHA-256 (64 hex digits) the card records; "" when it records none."""
    digest = str(card.get("digest", ""))
    if digest.startswith(DIGEST_PREFIX):
        return digest[len(DIGEST_PREFIX):]
    return str(card.get("sha256", ""))


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
    if digest != card_digest(card):
        raise MethodUnavailableError(
            f"The URDM prior weights {path.name} do not match their model card (SHA-256 {digest[:12]}… "
            f"instead of {card_digest(card)[:12]}…)",
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
    card = {k: v for k, v in card.items() if k != "sha256"}
    card.update(weights_file=WEIGHTS_FILE, digest=DIGEST_PREFIX + sha256_of(path), architecture=model.config)
    (weights_dir / CARD_FILE).write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    return path

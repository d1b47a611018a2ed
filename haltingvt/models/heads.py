"""Classification heads on the final cls feature: action classes and motion (static vs moving)."""

from __future__ import annotations

import torch
import torch.nn as nn


class ActionMotionHead(nn.Module):
    """fc_cls: C -> num_classes and fc_motion: C -> 2 (release names, under ``cls_head``)."""

    def __init__(self, embed_dim: int, num_classes: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc_cls = nn.Linear(embed_dim, num_classes)
        self.fc_motion = nn.Linear(embed_dim, 2)
        for fc in (self.fc_cls, self.fc_motion):
            nn.init.normal_(fc.weight, std=0.01)
            nn.init.zeros_(fc.bias)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """features: (B, C) -> action logits (B, num_classes), motion logits (B, 2)."""
        features = self.dropout(features)
        return self.fc_cls(features), self.fc_motion(features)

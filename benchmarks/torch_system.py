"""PyTorch peer: ``nn.LSTM`` / ``nn.GRU`` (oneDNN on CPU, cuDNN on CUDA), eager, as users write it."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.common import Spec, batch

CELLS = {"lstm": nn.LSTM, "gru": nn.GRU}


class TorchLM(nn.Module):
    def __init__(self, spec: Spec):
        super().__init__()
        self.embed = nn.Embedding(spec.vocab, spec.embed)
        self.rnn = CELLS[spec.cell](spec.embed, spec.hidden, spec.layers, batch_first=True)
        self.head = nn.Linear(spec.hidden, spec.vocab)

    def forward(self, tokens, state=None):
        """``tokens [B, T]`` -> ``(logits [B, T, V], state)``."""
        y, state = self.rnn(self.embed(tokens), state)
        return self.head(y), state


class TorchSystem:
    def __init__(self, spec: Spec, seed: int = 0):
        torch.manual_seed(seed)
        self.spec = spec
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.model = TorchLM(spec).to(self.device)
        x, y = batch(spec, seed)
        self.x = torch.as_tensor(x, dtype=torch.long, device=self.device)
        self.y = torch.as_tensor(y, dtype=torch.long, device=self.device)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=spec.learning_rate)
        # --dtype bfloat16: autocast on CUDA. --matmul-dtype bfloat16: autocast on CPU too
        # (oneDNN's bf16 LSTM/GRU, fast on CPUs with AVX512-BF16 or AMX)
        on_cuda = self.device.type == "cuda" and spec.dtype == "bfloat16"
        self.autocast = on_cuda or spec.matmul_dtype == "bfloat16"
        self.state = None  # spec.stream: the last step's final state, detached

    def detached(self, state):
        return tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()

    def train_step(self) -> None:
        self.opt.zero_grad(set_to_none=True)
        with torch.autocast(self.device.type, torch.bfloat16, enabled=self.autocast):
            logits, state = self.model(self.x, self.state)
            loss = F.cross_entropy(logits.reshape(-1, self.spec.vocab).float(), self.y.reshape(-1))
        if self.spec.stream:  # truncated BPTT: the next step starts where this one ended
            self.state = self.detached(state)
        loss.backward()
        nn.utils.clip_grad_norm_(self.model.parameters(), self.spec.clip)
        self.opt.step()
        self.sync()

    def forward(self) -> None:
        with (
            torch.inference_mode(),
            torch.autocast(self.device.type, torch.bfloat16, enabled=self.autocast),
        ):
            self.model(self.x)
        self.sync()

    def generate(self, length: int) -> None:
        """``length`` characters, batch 1: a Python loop of one-step calls (char-rnn style)."""
        with torch.inference_mode():
            x = torch.zeros((1, 1), dtype=torch.long, device=self.device)
            state = None
            for _ in range(length):
                logits, state = self.model(x, state)
                x = torch.multinomial(F.softmax(logits[:, -1], dim=-1), 1)
        self.sync()

"""Runs fuzz/fuzz_session.py: 24 000 random and mutated datagrams into local and remote
sessions; each is accepted or counted under exactly one drop reason, nothing escapes."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

from braid.core.wire import DROP_REASONS

FUZZ = Path(__file__).resolve().parents[2] / "fuzz" / "fuzz_session.py"


def load_fuzzer() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fuzz_session", FUZZ)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_fuzz_session_receive() -> None:
    fuzzer = load_fuzzer()
    outcomes = fuzzer.run(12_000, seed=20240611)
    total = outcomes["accepted"] + sum(outcomes["drop:" + r] for r in DROP_REASONS)
    assert total == 24_000
    # The corpus reaches every outcome (else the fuzzer is not testing much).
    assert outcomes["accepted"] > 3000
    for reason in DROP_REASONS:
        assert outcomes["drop:" + reason] > 0, reason

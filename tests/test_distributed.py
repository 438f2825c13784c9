"""Two CPU processes with gloo (what torchrun sets up): the ranks agree on the weights after training steps and
draw different augmentations."""
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from training import checkpoint

WORLD = 2
# 64 images, global batch 32 = 16 per rank: 2 optimizer steps per epoch.
TINY = ["--limit-train", "64", "--limit-test", "32", "--image-size", "16", "--widths", "8", "16",
        "--batch-size", "32", "--no-progress", "--seed", "7", "--epochs", "1", "--device", "cpu"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worker(rank: int, port: int, out: str) -> None:
    """One torchrun-like process: the environment torchrun would set, then the training entry point."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD), LOCAL_WORLD_SIZE=str(WORLD),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    from training.train import run

    result = run(TINY + ["--out", out])
    torch.save({"model": result.model.state_dict(), "history": result.history, "augment_seed": result.augment_seed,
                "world": result.world, "initialized": dist.is_initialized()}, os.path.join(out, f"rank{rank}.pt"))


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("ddp"))
    mp.spawn(worker, args=(free_port(), out), nprocs=WORLD, join=True)
    return out, [torch.load(os.path.join(out, f"rank{r}.pt"), weights_only=True) for r in range(WORLD)]


def test_ranks_agree_on_weights_after_steps(ranks):
    _, (a, b) = ranks
    assert a["world"] == b["world"] == WORLD
    assert a["model"].keys() == b["model"].keys()
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    # ... and they are not just the shared initialization: the steps moved them.
    from training.models import ModelConfig, build_model
    from training.train import seed_for
    torch.manual_seed(seed_for(7, "model"))
    initial = build_model(ModelConfig(image_size=16, widths=(8, 16))).state_dict()
    assert not torch.equal(initial["features.0.weight"], a["model"]["features.0.weight"])


def test_ranks_draw_different_augmentations_and_share_metrics(ranks):
    _, (a, b) = ranks
    assert a["augment_seed"] != b["augment_seed"]
    strip = [{k: v for k, v in r.items() if k != "seconds"} for r in a["history"]]
    assert strip == [{k: v for k, v in r.items() if k != "seconds"} for r in b["history"]]  # all-reduced
    assert not a["initialized"]  # the process group is torn down when training returns


def test_rank0_checkpoint_holds_every_ranks_random_state(ranks):
    out, (a, _) = ranks
    state = checkpoint.load(os.path.join(out, "checkpoint.pt"))
    assert len(state["ranks"]) == WORLD
    seeds = [r["pipeline"]["_extra_state"]["seed"] for r in state["ranks"]]
    assert seeds[0] == a["augment_seed"] and seeds[0] != seeds[1]
    for k, v in state["model"].items():
        assert torch.equal(v, a["model"][k])

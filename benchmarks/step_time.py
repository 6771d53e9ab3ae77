"""Training step time of each method over the `frozen` baseline on the same batch (demo model, CPU).

For every registered method: the demo's base model gains the video modality through that method (for
MoExtend: its `finetune` phase, with new experts in both layers); then one optimizer step (forward,
backward, AdamW) on the same batch of 32 random 3-frame clips is timed for every method in turn, round
robin after warm-up (benchmarks/_timing.py): median of the per-round ratios over `frozen`, with the spread.
`--earlier audio,depth` first grows every model through those modalities (same method, one stage each,
untrained), so the timed stage is a later one: for `ana`, a gated site with one expert per earlier step.
The demo trains its method runs at one thread each (`--threads 1`).

    .venv/bin/python benchmarks/step_time.py [--batch 32] [--rounds 15] [--modality video] [--threads N] [--methods ana,lora]
        [--earlier MODALITIES] [--compile inductor]

`--compile BACKEND` also times each method with its LLM and connectors compiled as `train.compile: true`
does (`<method>+compiled`, in the same round robin; the warm-up steps include the compilation).
"""

from __future__ import annotations

import argparse
import copy

import torch

from _demo_model import demo_base, items
from _timing import report, round_robin
from modweave.demo import METHOD_STAGE
from modweave.methods import list_methods
from modweave.training.optim import adamw

# the demo's per-method settings; MoExtend extends both layers (no extender statistics needed)
SETTINGS = {m: dict(v["settings"]) for m, v in METHOD_STAGE.items()}
SETTINGS["moextend"]["layers"] = [0, 1]


def stepper(model, batch):
    """A function doing one optimizer step (forward, backward, AdamW) of `model` on `batch`."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = adamw(params, lr=1e-4)  # the trainer's AdamW implementation choice
    model.train()

    def step() -> None:
        model(batch).loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return step


def build(method: str, base, spec, batch_size: int, earlier=()):
    model = copy.deepcopy(base)
    for s in [*earlier, spec]:
        if model.stage_open:
            model.end_stage()
        model.add_modality(s, method=method, settings=SETTINGS.get(method, {}))
        while method == "moextend" and model.stages[-1].phase != "finetune":
            model.end_stage()
            model.next_phase()
    batch = model.collator()(items(spec.name, batch_size))
    return model, batch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--modality", default="video")
    ap.add_argument("--earlier", default="", help="comma-separated modalities every model gains first")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--methods", default="", help="comma-separated subset (frozen is always included)")
    ap.add_argument("--compile", default="", help="also time each method compiled with this torch.compile backend")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    base, specs = demo_base()
    spec = next(s for s in specs if s.name == args.modality)
    earlier = [next(s for s in specs if s.name == m) for m in args.earlier.split(",") if m]
    methods = list_methods() if not args.methods else ["frozen", *(m for m in args.methods.split(",") if m != "frozen")]
    steps, trainable = {}, {}
    for method in methods:
        model, batch = build(method, base, spec, args.batch, earlier)
        steps[method] = stepper(model, batch)
        trainable[method] = f"{sum(p.numel() for p in model.parameters() if p.requires_grad):>12,}"
        if args.compile:
            from modweave.training.loop import _compile

            compiled, cbatch = build(method, base, spec, args.batch, earlier)
            _compile(compiled, args.compile)
            steps[f"{method}+compiled"] = stepper(compiled, cbatch)
            trainable[f"{method}+compiled"] = trainable[method]
    cpu: dict[str, list[float]] = {}
    times = round_robin(steps, args.rounds, args.warmup, cpu=cpu)
    after = f" after {args.earlier}" if earlier else ""
    print(f"{args.modality} stage{after}, batch {args.batch}, {torch.get_num_threads()} threads, "
          f"{args.rounds} rounds round robin after {args.warmup} warm-up")
    report(times, "frozen", {"__header__": "   trainable", **trainable}, cpu=cpu)


if __name__ == "__main__":
    main()

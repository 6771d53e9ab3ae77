"""Every `modweave ...` command in README.md and docs/*.md runs, or says why it cannot here (issue 15, item 5).

Commands come from the fenced shell blocks (backslash continuations joined, heredoc bodies and comments
dropped, `&&` chains split, `accelerate launch ... -m modweave.cli` read as modweave) and from inline code
spans whose second word is a subcommand. Each one is listed in exactly one of:
- a `Step` of `STEPS`: run in-process through `modweave.cli.main`, in order, in one tmp folder on
  --quick-sized MCL-Digits (placeholders such as CKPT filled in, tiny budgets appended); exit 0 and the
  outputs the doc promises must exist;
- `SKIP`: it needs a GPU, a Hub upload/download, paper-scale data or minutes; its argv must still parse with
  the subcommand's own parser (a renamed flag fails) and its config must load;
- `ELSEWHERE`: another test runs it as written;
- `PROSE`: the command's name in a sentence, not a command line.
A new or changed doc command fails `test_every_doc_command_is_listed` until it is listed here.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from modweave.cli import build_parser, main

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
NOT_SHELL = {"python", "yaml", "json"}


# ---------------------------------------------------------------------------------------------- extraction

def _subcommands() -> set[str]:
    parser = build_parser()
    return set(next(a for a in parser._actions if a.dest == "command").choices)  # noqa: SLF001


def _block_commands(block: str) -> list[str]:
    """The modweave command lines of one shell block, whitespace collapsed, trailing comments dropped."""
    block = re.sub(r"<<'?(\w+)'?\n.*?\n\1\n", "\n", block, flags=re.S)  # heredoc bodies are data
    block = block.replace("\\\n", " ")
    found = []
    for line in block.splitlines():
        line = " ".join(re.sub(r"(^|\s)#.*$", "", line).split())
        for part in line.split(" && "):
            words = part.split()
            if words and (words[0] in ("modweave", ".venv/bin/modweave")
                          or words[:2] == ["accelerate", "launch"] and "modweave.cli" in words):
                found.append(part)
    return found


def doc_commands() -> dict[str, list[str]]:
    """{command text: [doc files holding it]} for README.md and docs/*.md."""
    names = _subcommands() | {"COMMAND"}
    found: dict[str, list[str]] = {}
    for doc in DOCS:
        text = doc.read_text()
        commands = [c for lang, body in re.findall(r"```(\w*)\n(.*?)```", text, flags=re.S)
                    if lang not in NOT_SHELL for c in _block_commands(body)]
        prose = re.sub(r"```.*?```", "", text, flags=re.S)
        commands += [" ".join(span.split()) for span in re.findall(r"`(modweave [^`]+)`", prose)
                     if span.split()[1] in names]
        for command in commands:
            found.setdefault(command, []).append(doc.relative_to(REPO).as_posix())
    return found


# ------------------------------------------------------------------------------------- what runs, and how

# a budget of seconds on top of the doc's demo command (tests/test_demo.py's reduced budget)
TINY_DEMO = ("train.base.steps=6 train.steps=2 train.batch_size=8 data.max_test=8 data.heldout=8 "
             "train.progress=false data.digits.n_train=24 data.digits.n_test=8")
# docs/paper-scale.md's usage line of the memory estimate
ESTIMATE = ("modweave params CONFIG --memory [--micro-batch B] [--seq-len S] [--grad-checkpointing | "
            "--no-grad-checkpointing] [--quantization 8bit|4bit] [--json]")
MODALITIES = ("text", "image", "video", "audio", "depth", "point_cloud")

# the --from step's config: one MoExtend stage, so that select-layers has an extender step to read
GROW_MOE = """name: grow-moe
train: {steps: 2, batch_size: 4, lr: 0.001, log_every: 0, progress: false}
data: {heldout: 2}
eval: {batch_size: 16, max_new_tokens: 2}
stages:
  - {modality: {name: depth, encoder: image, cue: " depth: ", loader: {size: 16}}, method: moextend}
"""


@dataclass(frozen=True)
class Step:
    """One concrete command; `docs` are the doc commands (or synopses) it instantiates."""

    argv: str
    docs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()  # paths (relative to the tmp folder) the doc promises
    stdout: tuple[str, ...] = ()  # substrings of what the command prints

    @property
    def id(self) -> str:
        return self.argv.replace(TINY_DEMO, "TINY_DEMO")


STEPS: list[Step] = [
    Step("data digits --out runs/mcl --n-train 6 --n-test 3 --workers 1",
         ("modweave data digits --out DIR",),
         ("runs/mcl/meta.json", *(f"runs/mcl/{m}_{split}.jsonl" for m in MODALITIES for split in ("train", "test")))),
    Step("data check runs/mcl/audio_train.jsonl --root runs/mcl --follow-symlinks",
         ("modweave data check PATH [--root DIR] [--follow-symlinks]",), stdout=("0 problems",)),
    Step("data check runs/mcl", ("modweave data check ROOT",),
         stdout=("annotation files,", "records ok, 0 problems (")),
    Step("train configs/test-train.yaml data.root=runs/mcl --out runs/run",
         ("modweave train CONFIG.yaml [key=value ...] --out DIR [--resume [--force-config]] [--from CKPT]",),
         # README: checkpoint folder with a model card, lora's PEFT folder, report and log
         ("runs/run/checkpoint/manifest.json", "runs/run/checkpoint/README.md", "runs/run/checkpoint/tokenizer",
          "runs/run/checkpoint/stage-00-base.safetensors", "runs/run/checkpoint/peft/audio/adapter_config.json",
          "runs/run/checkpoint/peft/audio/adapter_model.safetensors", "runs/run/report.md", "runs/run/report.json",
          "runs/run/progress.json", "runs/run/train.log", "runs/run/accuracy_matrix.png")),
    Step("train configs/test-train.yaml data.root=runs/mcl --out runs/run --resume",
         ("modweave train CONFIG.yaml [key=value ...] --out DIR [--resume [--force-config]] [--from CKPT]",)),
    Step("train configs/test-train.yaml data.root=runs/mcl eval.batch_size=8 --out runs/run --resume --force-config",
         ("modweave train CONFIG.yaml [key=value ...] --out DIR [--resume [--force-config]] [--from CKPT]",)),
    Step("train grow-moe.yaml data.root=runs/mcl --from runs/run/checkpoint --out runs/child",
         ("modweave train CONFIG.yaml [key=value ...] --out DIR [--resume [--force-config]] [--from CKPT]",),
         ("runs/child/checkpoint/manifest.json", "runs/child/checkpoint/stage-05-depth-finetune.safetensors")),
    # a second method on the same data: what `report --merge` merges
    Step("train configs/test-train.yaml data.root=runs/mcl --method ana --out runs/run-ana", (),
         ("runs/run-ana/report.json",)),
    Step("eval runs/run/checkpoint --data runs/mcl/audio_test.jsonl",
         ("modweave eval CKPT --data FILE.jsonl [--upto M] [--no-verify]",), stdout=("exact_match",)),
    Step("eval runs/run/checkpoint --data runs/mcl/image_test.jsonl --upto base --no-verify",
         ("modweave eval CKPT --data FILE.jsonl [--upto M] [--no-verify]",), stdout=("exact_match",)),
    Step("generate runs/run/checkpoint --modality audio --media runs/mcl/audio/0000.wav "
         "--prompt 'What digit is played?'",
         ("modweave generate CKPT --modality audio --media FILE --prompt TEXT",), stdout=("greedy:",)),
    Step("generate runs/run/checkpoint --modality image --media runs/mcl/image/0000.png --modality audio --media "
         "runs/mcl/audio/0000.wav --prompt 'Question: Is <media:1> the digit of <media:2>? Answer:'",
         ("modweave generate runs/run/checkpoint --modality image --media runs/mcl/image/0000.png --modality audio "
          "--media runs/mcl/audio/0000.wav --prompt \"Question: Is <media:1> the digit of <media:2>? Answer:\"",),
         stdout=("greedy:",)),
    Step("eval runs/run/checkpoint --data runs/mcl/xmodal_test.jsonl",
         ("modweave eval runs/run/checkpoint --data runs/mcl/xmodal_test.jsonl",), stdout=("image+audio",)),
    Step("cache-features configs/test-train.yaml data.root=runs/mcl --out runs/feats",
         ("modweave cache-features CONFIG data.root=DIR --out FEATS",), stdout=("features in runs/feats",)),
    Step("params configs/moextend/mixtral-8x7b-clip336.yaml train.distributed.strategy=fsdp --memory "
         "--grad-checkpointing --processes 8",
         ("modweave params configs/moextend/mixtral-8x7b-clip336.yaml train.distributed.strategy=fsdp --memory "
          "--grad-checkpointing --processes 8",), stdout=("(fsdp/8)",)),
    Step("params configs/test-train.yaml", ("modweave params CONFIG [--json] [--memory]",), stdout=("trainable",)),
    Step("params configs/test-train.yaml --json --memory", ("modweave params CONFIG [--json] [--memory]",),
         stdout=('"activations"',)),
    Step("params configs/test-train.yaml --memory", ("modweave params CONFIG --memory",), stdout=("grads+adam",)),
    Step("params configs/test-train.yaml --memory --micro-batch 2 --seq-len 8 --grad-checkpointing "
         "--quantization 8bit --json", (ESTIMATE,), stdout=('"quantization": "8bit"',)),
    Step("params configs/test-train.yaml --memory --no-grad-checkpointing --quantization 4bit", (ESTIMATE,),
         stdout=("grad checkpointing off",)),
    # the paper presets build on the meta device from shipped architecture files: seconds, no download
    Step("params configs/pathweave/instructblip-vicuna7b.yaml --memory --grad-checkpointing",
         ("modweave params configs/pathweave/instructblip-vicuna7b.yaml --memory --grad-checkpointing",),
         stdout=("grad checkpointing on",)),
    Step("params configs/pathweave/instructblip-vicuna7b.yaml",
         ("modweave params configs/pathweave/instructblip-vicuna7b.yaml",), stdout=("1,072,529",)),
    Step("params configs/moextend/mixtral-8x7b-clip336.yaml",
         ("modweave params configs/moextend/mixtral-8x7b-clip336.yaml",), stdout=("2,839,622,144",)),
    Step("select-layers runs/child/checkpoint --out runs/layers.json",
         ("modweave select-layers CKPT --out FILE.json",), ("runs/layers.json",)),
    Step("report runs/run --merge runs/run-ana", ("modweave report DIR [--merge RUN ...]",),
         ("runs/run/report.md", "runs/run/accuracy_matrix.png", "runs/run/loss_curves.png")),
    Step("list", ("modweave list [KIND]", "modweave list"), stdout=("moextend",)),
    Step("list methods", ("modweave list [KIND]", "modweave list [methods|modalities|encoders|connectors|bases]"),
         stdout=("ana",)),
    Step(f"demo --quick --methods ana --out runs/demo --seed 0 --workers 1 {TINY_DEMO}",  # one method: half the seconds
         ("modweave demo [--quick] [--methods ana,lora] [--out DIR] [--seed N] [--workers N]", "modweave demo --quick"),
         ("runs/demo/report.md", "runs/demo/report.json", "runs/demo/accuracy_matrix.png",
          "runs/demo/ana/checkpoint/manifest.json", "runs/demo/ana/checkpoint/README.md")),
]

PUSH = "modweave push CKPT REPO_ID [--private] [--revision BRANCH]"

# doc command -> (why it cannot run here, the argv checked instead; None: the command itself)
SKIP: dict[str, tuple[str, str | None]] = {
    ".venv/bin/modweave demo": ("the full demo: 5 min on 2 cores; `demo --quick` runs the same pipeline above", None),
    "modweave demo --seeds 0,1,2": ("three full demos: 20 min on 2 cores; tests/test_demo.py runs two seeds on a tiny "
                                    "budget", None),
    PUSH: ("uploads to the Hugging Face Hub (network + token); tests/test_hub.py checks its offline refusals",
           "modweave push runs/run/checkpoint org/name --private --revision dev"),
    "modweave push CKPT org/name": ("uploads to the Hub", "modweave push runs/run/checkpoint org/name"),
    "modweave train configs/pathweave/instructblip-vicuna7b.yaml data.root=/data/mcl --out runs/pathweave":
        ("InstructBLIP-Vicuna-7B weights (Hub download), a GPU and the MCL data sets", None),
    "modweave train configs/moextend/mixtral-8x7b-clip336.yaml data.root=/data/llava --out runs/moextend":
        ("Mixtral-8x7B weights (Hub download), several GPUs and LLaVA's data", None),
    "accelerate launch --num_processes 4 -m modweave.cli train configs/pathweave/instructblip-vicuna7b.yaml "
    "model.base=instructblip:Salesforce/instructblip-vicuna-7b data.root=/data/mcl --out runs/pathweave":
        ("4 GPUs, InstructBLIP weights from the Hub, the MCL data sets", None),
    "accelerate launch --num_processes 8 -m modweave.cli train configs/moextend/mixtral-8x7b-clip336.yaml "
    "data.root=/data/llava train.distributed.strategy=fsdp --out runs/moextend":
        ("8 GPUs, Mixtral weights from the Hub, LLaVA's data (tests/test_fsdp.py shards on 2 CPU processes)", None),
    # docs/distributed.md
    "accelerate launch --multi_gpu --num_processes 4 -m modweave.cli train configs/pathweave/instructblip-vicuna7b.yaml "
    "model.base=instructblip:Salesforce/instructblip-vicuna-7b data.root=/data/mcl "
    "stages.1.modality.encoder='{kind: beats, name_or_path: /ckpt/BEATs_iter3_plus_AS2M.pt}' "
    "stages.3.modality.encoder='{kind: pointbert, name_or_path: /ckpt/pointbert_ulip2.pt}' "
    "train.distributed.timeout=3600 --out runs/pathweave":
        ("4 GPUs, InstructBLIP weights, BEATs / ULIP-2 checkpoints, the MCL data sets", None),
    "accelerate launch --multi_gpu --num_processes 8 -m modweave.cli train configs/moextend/mixtral-8x7b-clip336.yaml "
    "model.llm.name_or_path=mistralai/Mixtral-8x7B-Instruct-v0.1 "
    "stages.0.modality.encoder.name_or_path=openai/clip-vit-large-patch14-336 data.root=/data/llava "
    "train.distributed.strategy=fsdp train.distributed.timeout=3600 train.checkpoint_every=200 --out runs/moextend":
        ("8 GPUs, Mixtral and CLIP weights from the Hub, LLaVA's data", None),
    "accelerate launch --num_processes N -m modweave.cli train configs/pathweave/instructblip-vicuna7b.yaml "
    "data.root=/data/mcl --out runs/pathweave":
        ("N GPUs, InstructBLIP weights, the MCL data sets",
         "accelerate launch --num_processes 2 -m modweave.cli train configs/pathweave/instructblip-vicuna7b.yaml "
         "data.root=/data/mcl --out runs/pathweave"),
}

GROW_EXAMPLE = "tests/test_readme.py::test_readme_grow_example_runs runs the README block as written"
ELSEWHERE: dict[str, str] = {
    "modweave train configs/test-train.yaml data.root=runs/mcl5 "
    "\"data.digits.modalities=[text,image,video,audio,depth]\" --out runs/parent": GROW_EXAMPLE,
    "modweave train grow.yaml data.root=runs/mcl5 --from runs/parent/checkpoint --out runs/child": GROW_EXAMPLE,
    "modweave COMMAND --help": "test_every_subcommand_has_help below",
}
ELSEWHERE.update({row: "tests/test_memory.py::test_paper_scale_memory_table_is_what_the_command_prints reruns "
                  "every row of docs/paper-scale.md's memory table and compares the numbers" for row in (
    "modweave params configs/pathweave/instructblip-vicuna7b.yaml --memory",
    "modweave params configs/pathweave/instructblip-vicuna7b.yaml --memory --no-grad-checkpointing",
    "modweave params configs/moextend/mixtral-8x7b-clip336.yaml --memory",
    "modweave params configs/moextend/mixtral-8x7b-clip336.yaml --memory --no-grad-checkpointing",
    "modweave params configs/moextend/mixtral-8x7b-clip336.yaml --memory --quantization 4bit",
)})

# the name of a command in a sentence, with nothing to run
PROSE = {"modweave params", "modweave eval", "modweave train", "modweave params ... --memory --grad-checkpointing",
         "modweave cache-features", "modweave demo"}


# ----------------------------------------------------------------------------------------------- running

@dataclass
class Result:
    rc: int
    stdout: str
    stderr: str
    seconds: float = 0.0
    error: BaseException | None = field(default=None, repr=False)


def _run(argv: list[str]) -> Result:
    out, err = io.StringIO(), io.StringIO()
    start = time.perf_counter()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = main(argv)
        return Result(rc, out.getvalue(), err.getvalue(), time.perf_counter() - start)
    except SystemExit as exc:  # argparse
        return Result(int(exc.code or 0), out.getvalue(), err.getvalue(), time.perf_counter() - start)
    except Exception as exc:  # a traceback is a failure of that step, not of the whole module
        return Result(1, out.getvalue(), f"{err.getvalue()}\n{type(exc).__name__}: {exc}", 0.0, exc)


@pytest.fixture(scope="module")
def ran(tmp_path_factory, one_thread) -> tuple[Path, dict[str, Result]]:
    """Every step, once, in order, in one tmp folder holding the repository's configs."""
    root = tmp_path_factory.mktemp("docs-commands")
    (root / "configs").symlink_to(REPO / "configs")
    (root / "grow-moe.yaml").write_text(GROW_MOE)
    before_cwd, before_env = Path.cwd(), os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"  # nothing here may download
    os.chdir(root)
    try:
        results = {step.argv: _run(shlex.split(step.argv)) for step in STEPS}
    finally:
        os.chdir(before_cwd)
        if before_env is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = before_env
    return root, results


# ------------------------------------------------------------------------------------------------- tests

def test_every_doc_command_is_listed():
    found = doc_commands()
    listed = [d for step in STEPS for d in step.docs] + [*SKIP, *ELSEWHERE, *PROSE]
    unlisted = {c: docs for c, docs in found.items() if c not in listed}
    assert not unlisted, f"doc commands not listed in STEPS/SKIP/ELSEWHERE/PROSE of this file: {unlisted}"
    stale = sorted(set(listed) - set(found))
    assert not stale, f"listed but no longer in any doc: {stale}"
    by_list = [set(d for step in STEPS for d in step.docs), set(SKIP), set(ELSEWHERE), PROSE]
    twice = [c for c in found if sum(c in group for group in by_list) > 1]
    assert not twice, f"listed in more than one of STEPS/SKIP/ELSEWHERE/PROSE: {twice}"


@pytest.mark.slow
@pytest.mark.parametrize("step", STEPS, ids=[s.id for s in STEPS])
def test_doc_command_runs(ran, step):
    root, results = ran
    result = results[step.argv]
    assert result.rc == 0, f"`modweave {step.argv}` exited {result.rc}: {result.stderr[-1500:]}"
    missing = [p for p in step.outputs if not (root / p).exists()]
    assert not missing, f"`modweave {step.argv}` did not write {missing}"
    absent = [s for s in step.stdout if s not in result.stdout]
    assert not absent, f"`modweave {step.argv}` did not print {absent}: {result.stdout[-1500:]}"


def _modweave_argv(command: str) -> list[str]:
    """The modweave arguments of a doc command (after `modweave`, or after accelerate's `-m modweave.cli`)."""
    words = shlex.split(command)
    if words[:2] == ["accelerate", "launch"]:
        from accelerate.commands.launch import launch_command_parser

        args = launch_command_parser().parse_args(words[2:])  # accelerate's own flags must exist too
        assert args.module and args.training_script == "modweave.cli", command
        return list(args.training_script_args)
    return words[1:]


def _parses(argv: list[str]):
    try:
        return build_parser().parse_args(argv)
    except SystemExit as exc:
        pytest.fail(f"`modweave {shlex.join(argv)}` does not parse (exit {exc.code})")


@pytest.mark.parametrize("command", sorted(SKIP), ids=sorted(SKIP))
def test_skipped_command_parses_and_its_config_loads(command, monkeypatch):
    """Cannot run here (see SKIP); a renamed flag, a bad override key or a broken preset still fails."""
    from modweave.config import load_run_config
    from modweave.training.config import run_sections

    monkeypatch.chdir(REPO)
    args = _parses(_modweave_argv(SKIP[command][1] or command))
    if args.command in ("train", "params"):
        cfg = load_run_config(args.config, args.overrides)
        run_sections(cfg)  # train/data/eval/phases as the trainer types them


@pytest.mark.parametrize("command", sorted(c for c in ELSEWHERE if "COMMAND" not in c))
def test_commands_run_elsewhere_parse(command):
    _parses(_modweave_argv(command))


def _flags(text: str) -> set[str]:
    return set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", text))


SYNOPSES = sorted({d for step in STEPS for d in step.docs if re.search(r"\[|\b[A-Z]{2,}", d)} | {PUSH})


@pytest.mark.parametrize("synopsis", SYNOPSES)
def test_every_flag_of_a_synopsis_is_exercised(synopsis):
    """The usage lines (README's command table, the memory estimate's): every flag they show is used by a
    step that runs (or, for push, by an argv that parses), so a renamed flag fails here."""
    instances = [f"modweave {s.argv}" for s in STEPS if synopsis in s.docs]
    instances += [SKIP[synopsis][1]] if synopsis in SKIP else []
    assert instances, synopsis
    for instance in instances:
        _parses(_modweave_argv(instance))
        assert _modweave_argv(instance)[0] == synopsis.split()[1], (synopsis, instance)
    unused = _flags(synopsis) - set().union(*(_flags(i) for i in instances))
    assert not unused, f"{synopsis}: no instance uses {sorted(unused)}"


def test_every_subcommand_has_help():
    """`modweave COMMAND --help` for each (the README's command table points there)."""
    nested = {"data": ("digits", "check")}
    for name in sorted(_subcommands()):
        for argv in ([name, "--help"], *([name, sub, "--help"] for sub in nested.get(name, ()))):
            result = _run(argv)
            assert result.rc == 0 and "usage: modweave" in result.stdout, argv

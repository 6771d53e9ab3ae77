"""Sharded training of one stage phase with PyTorch FSDP2 (`train.distributed.strategy: fsdp`), and
statistics that every rank computes on its share of the data (`across_ranks`).

Why per phase: the model grows between phases (`add_modality`, `next_phase` add paths, adapters and
experts), and what comes after a phase (the method's `end_phase` statistics, the stage file, evaluation on
rank 0) needs plain, full tensors. So `shard_phase` applies `fully_shard` once the phase's modules exist,
the phase trains on sharded parameters (each rank keeps 1/N of every parameter, gradient and AdamW
moment), and `ShardedModel.gather()` all-gathers every parameter back into a plain `nn.Parameter`
and removes FSDP from the modules (class, hooks, state), so the model is again the one a
single-process run has, with the same keys and values.

Groups: each decoder layer of the LLM is its own group (gathered just for its forward and backward);
the root group holds the rest (embeddings, LM head, encoders, connectors, paths), gathered for the
whole forward: modules that run only for some modalities (a rank's batch may lack a modality) sit in
the root group, so every rank issues the same collectives in the same order.

Unused parameters: a trainable tensor that gets no gradient on one rank (its modality is absent there,
a new expert no token chose) is reduced as zeros (FSDP's `reduce_scatter_unused_params`), as DDP
averages it. One that gets no gradient on ANY rank has its gradient set back to None, so AdamW skips
it exactly as a single-process run does (a zero gradient would still move it through momentum).
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import nn

logger = logging.getLogger(__name__)

# set by the trainer around `end_stage` when every rank calls it with the same data (see `across_ranks`)
_ACROSS_RANKS: contextvars.ContextVar[bool] = contextvars.ContextVar("modweave_across_ranks", default=False)


def world() -> tuple[int, int]:
    """`(rank, world size)` of the default process group; `(0, 1)` without one."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


# ------------------------------------------------------------------------------------------------
# statistics across ranks


@contextlib.contextmanager
def across_ranks(enabled: bool = True) -> Iterator[None]:
    """Inside this block every rank runs the same code on the same data (the trainer's `end_stage`):
    statistics may split the data between ranks (`rank_share`) and sum their counts (`all_reduce_sum`)."""
    token = _ACROSS_RANKS.set(enabled and world()[1] > 1)
    try:
        yield
    finally:
        _ACROSS_RANKS.reset(token)


def sharing_work() -> bool:
    """Whether the current code runs on every rank together (inside `across_ranks`, several processes)."""
    return _ACROSS_RANKS.get()


def rank_share(items: Sequence[Any]) -> list[Any]:
    """This rank's items of `items` (every N-th from its rank) inside `across_ranks`; all of them outside."""
    items = list(items)
    if not sharing_work():
        return items
    rank, size = world()
    return items[rank::size]


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """The element-wise sum of `tensor` over ranks inside `across_ranks` (itself outside), on its device.
    NCCL reduces only GPU tensors: a CPU tensor goes through the current GPU and comes back."""
    if not sharing_work():
        return tensor
    import torch.distributed as dist

    on = tensor
    if dist.get_backend() == "nccl" and tensor.device.type != "cuda":
        on = tensor.to(torch.device("cuda", torch.cuda.current_device()))
    else:
        on = tensor.clone()
    dist.all_reduce(on, op=dist.ReduceOp.SUM)
    return on.to(tensor.device)


def peer_failure(err: BaseException, timeout: float) -> str | None:
    """A sentence for a collective that failed because another process died or stalled (None: another error)."""
    import torch.distributed as dist

    text = str(err)
    if "timed out" in text.lower() or "timeout" in text.lower():
        return (f"a collective waited longer than train.distributed.timeout={timeout:g} s: another process stalled "
                "or died (see its log)")
    peer = ("connection closed by peer", "connection reset by peer", "broken pipe", "nccl communicator was aborted")
    if isinstance(err, dist.DistError) or any(s in text.lower() for s in peer):
        return f"a collective failed ({' '.join(text.split())[:200]}): another process died (see its log)"
    return None


# ------------------------------------------------------------------------------------------------
# which sharding a phase gets


def accelerate_kind(accelerator: Any) -> str:
    """The accelerate launch's own distributed type, lower case (`no`, `multi_gpu`, `fsdp`, `deepspeed`...)."""
    kind = getattr(accelerator, "distributed_type", None)
    return str(getattr(kind, "value", kind) or "no").lower()


def check_accelerator(accelerator: Any) -> None:
    """Refuse an accelerate setup whose sharding would break the stage files: DeepSpeed ZeRO-3 partitions
    every parameter inside the model, and modweave does not gather them at phase ends (fsdp does)."""
    from ..fields import ConfigError

    if accelerate_kind(accelerator) != "deepspeed":
        return
    plugin = getattr(getattr(accelerator, "state", None), "deepspeed_plugin", None)
    if int(getattr(plugin, "zero_stage", 0) or 0) == 3:
        raise ConfigError("accelerate config: DeepSpeed ZeRO-3 partitions the parameters that modweave's stage "
                          "files, end_stage and evaluation need whole: use train.distributed.strategy=fsdp (the "
                          "same sharding, gathered at each phase end) or ZeRO stage 1/2")


def wants_fsdp(strategy: str, accelerator: Any) -> bool:
    """Whether a phase is sharded: `strategy: fsdp`, or an accelerate FSDP launch (`distributed_type: FSDP`,
    whose whole-model wrapping would not be undone between phases: modweave's per-phase FSDP2 runs instead),
    on several processes."""
    if strategy != "fsdp" and accelerate_kind(accelerator) != "fsdp":
        return False
    return accelerator.num_processes > 1


# ------------------------------------------------------------------------------------------------
# FSDP2 for one phase


def decoder_layers(llm: nn.Module) -> list[nn.Module]:
    """The LLM's decoder layers: modules of the classes transformers marks as not to be split
    (`_no_split_modules`, what accelerate's FSDP auto-wrap uses), else the longest `layers` ModuleList."""
    names = set(getattr(llm, "_no_split_modules", None) or [])
    layers = [m for m in llm.modules() if type(m).__name__ in names]
    if layers:
        return layers
    lists = [m for n, m in llm.named_modules() if isinstance(m, nn.ModuleList) and n.rsplit(".", 1)[-1] == "layers"]
    return list(max(lists, key=len)) if lists else []


def _dtensor_cls() -> type:
    from torch.distributed.tensor import DTensor

    return DTensor


class ShardedModel:
    """FSDP2 applied to `model` for one phase (built by `shard_phase`); `gather()` undoes it."""

    def __init__(self, model: nn.Module, groups: list[tuple[nn.Module, type]], replicated: set[nn.Parameter],
                 home: torch.device):
        self.model = model
        self.groups = groups  # (module, its class before fully_shard), the root last
        # scalar parameters FSDP cannot shard (e.g. PathWeave's adapter scales): kept whole on every rank,
        # their gradients averaged here
        self.replicated = [(n, p) for n, p in model.named_parameters() if p in replicated]
        self.prefix = {id(m): name for name, m in model.named_modules()}
        self.home = home  # where the full tensors go back to (the model's device before sharding)
        self.used: set[str] = set()  # trainable parameters that got a gradient on this rank this step
        self.handles = [m.register_forward_pre_hook(self._watch_unsharded) for m, _ in groups]
        self.gathered = False

    # -- training

    def _watch_unsharded(self, module: nn.Module, args: Any) -> None:
        """After FSDP's own pre-forward hook (it runs first): the module's parameters are the gathered
        (unsharded) tensors; a hook on each notes, by name, that it received a gradient."""
        dtensor = _dtensor_cls()
        prefix = self.prefix.get(id(module), "")
        for name, p in module.named_parameters(prefix=prefix):
            if p.requires_grad and not isinstance(p, dtensor) and not getattr(p, "_modweave_watched", False):
                p.register_hook(lambda grad, n=name: self.used.add(n) or grad)
                p._modweave_watched = True

    def start_step(self) -> None:
        self.used = set()

    @contextlib.contextmanager
    def accumulating(self, sync: bool) -> Iterator[None]:
        """A micro-batch whose gradients are only accumulated (`sync=False`): no reduce-scatter yet."""
        if sync:
            yield
            return
        self.model.set_requires_gradient_sync(False)
        try:
            yield
        finally:
            self.model.set_requires_gradient_sync(True)

    def finish_gradients(self) -> list[str]:
        """After the step's last backward: average the replicated parameters' gradients over ranks, and
        set `grad = None` again on trainable parameters that got no gradient on any rank (FSDP reduced
        zeros for them). Returns the names of those."""
        import torch.distributed as dist

        for n, p in self.replicated:
            if p.requires_grad and p.grad is not None:
                self.used.add(n)
        names = sorted(n for n, p in self.model.named_parameters() if p.requires_grad)
        flags = torch.tensor([n in self.used for n in names], dtype=torch.float32)
        if dist.get_backend() == "nccl":  # NCCL reduces GPU tensors only
            flags = flags.to(torch.device("cuda", torch.cuda.current_device()))
        dist.all_reduce(flags, op=dist.ReduceOp.MAX)
        used_anywhere = {n for n, f in zip(names, flags.tolist()) if f > 0}
        size = world()[1]
        for n, p in self.replicated:
            if p.requires_grad and n in used_anywhere:
                grad = p.grad if p.grad is not None else torch.zeros_like(p)
                dist.all_reduce(grad, op=dist.ReduceOp.SUM)
                p.grad = grad / size
        unused = [n for n in names if n not in used_anywhere]
        if unused:
            logger.debug("fsdp: no gradient on any rank this step (AdamW skips them): %s", ", ".join(unused))
            params = dict(self.model.named_parameters())
            for n in unused:
                params[n].grad = None
        return unused

    @torch.no_grad()
    def clip_grad_norm_(self, max_norm: float) -> torch.Tensor:
        """`torch.nn.utils.clip_grad_norm_` over sharded and replicated gradients (a collective): the
        global L2 norm from each rank's shards (squares summed over ranks) plus the replicated ones."""
        import torch.distributed as dist

        dtensor = _dtensor_cls()
        grads = [p.grad for p in self.model.parameters() if p.requires_grad and p.grad is not None]
        local = [g.to_local() for g in grads if isinstance(g, dtensor)]
        whole = [g for g in grads if not isinstance(g, dtensor)]
        device = local[0].device if local else (whole[0].device if whole else torch.device("cpu"))
        sharded_sq = sum((torch.linalg.vector_norm(g.float()) ** 2 for g in local), torch.zeros((), device=device))
        dist.all_reduce(sharded_sq, op=dist.ReduceOp.SUM)
        whole_sq = sum((torch.linalg.vector_norm(g.float()) ** 2 for g in whole), torch.zeros((), device=device))
        total = torch.sqrt(sharded_sq + whole_sq)
        coef = torch.clamp(max_norm / (total + 1e-6), max=1.0)
        for g in local + whole:
            g.mul_(coef.to(g.dtype))
        return total

    def all_finite(self) -> bool:
        """Whether every trainable parameter is finite, on every rank's shards (a collective)."""
        import torch.distributed as dist

        dtensor = _dtensor_cls()
        ok = all(bool(torch.isfinite(p.to_local() if isinstance(p, dtensor) else p).all())
                 for p in self.model.parameters() if p.requires_grad)
        flag = torch.tensor([1.0 if ok else 0.0])
        if dist.get_backend() == "nccl":
            flag = flag.to(torch.device("cuda", torch.cuda.current_device()))
        dist.all_reduce(flag, op=dist.ReduceOp.MIN)
        return bool(flag.item() == 1.0)

    # -- ending the phase

    @torch.no_grad()
    def gather(self) -> None:
        """Every rank: all-gather each parameter into a plain `nn.Parameter` (same dtype, requires_grad)
        in place of its shard, and remove FSDP from the modules. Collective: all ranks call it."""
        if self.gathered:
            return
        for h in self.handles:
            h.remove()
        for module, _ in self.groups:
            module.reshard()  # registered parameters are the sharded DTensors again
        dtensor = _dtensor_cls()
        full: dict[int, nn.Parameter] = {}
        for module in self.model.modules():  # the same order on every rank: the same collectives
            for name, p in list(module._parameters.items()):
                if isinstance(p, dtensor):
                    if id(p) not in full:  # one tensor at a time: the device holds one full tensor extra at most
                        value = p.full_tensor().detach().to(self.home)
                        value = value.clone() if value.data_ptr() == p.to_local().data_ptr() else value
                        full[id(p)] = nn.Parameter(value, requires_grad=p.requires_grad)
                    module._parameters[name] = full[id(p)]
            for name, b in list(module._buffers.items()):  # FSDP moved them to the mesh's device
                if b is not None and b.device != self.home:
                    module._buffers[name] = b.to(self.home)
        for module, cls in self.groups:
            _remove_fsdp(module, cls)
        for module in self.model.modules():
            for attr in ("_is_fsdp_managed_module", "_fsdp_use_orig_params"):
                module.__dict__.pop(attr, None)
            for p in module._parameters.values():
                if p is not None and hasattr(p, "_modweave_watched"):
                    del p._modweave_watched
        self.gathered = True
        release_freed_memory(self.home.type)


def release_freed_memory(device_type: str) -> None:
    """Hand memory freed by sharding back: the CUDA cache, or glibc's heap on the host (`malloc_trim`),
    so a process's resident size shows what it holds (freed full tensors otherwise stay in its heap)."""
    import gc

    gc.collect()
    if device_type == "cuda" and torch.cuda.is_available():
        torch.cuda.empty_cache()
        return
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: the allocator keeps its heap
        pass


def _remove_fsdp(module: nn.Module, cls: type) -> None:
    """Undo `fully_shard(module)`: its hooks (forward, state-dict), its state and its FSDP class."""
    from torch.distributed import _composable_state
    import importlib

    # the module, not the function of the same name its package exports
    contract = importlib.import_module("torch.distributed._composable.contract")
    from torch.distributed.fsdp import fully_shard

    state = fully_shard.state(module)
    if state is not None:
        for attr in ("_pre_forward_hook_handle", "_post_forward_hook_handle"):
            handle = getattr(state, attr, None)
            if handle is not None:
                handle.remove()
        for group in getattr(state, "_fsdp_param_groups", None) or [getattr(state, "_fsdp_param_group", None)]:
            if group is None:
                continue
            for attr in ("_module_to_pre_save_state_dict_hook_handle", "_module_to_pre_load_state_dict_hook_handle"):
                for handle in getattr(group, attr, {}).values():
                    handle.remove()
                getattr(group, attr, {}).clear()
            for fsdp_param in group.fsdp_params:
                handle = getattr(fsdp_param, "_post_load_hook_handle", None)
                if handle is not None:
                    handle.remove()
    module.__dict__.pop(contract.STATE_KEY, None)
    module.__dict__.pop(contract.REGISTRY_KEY, None)
    _composable_state._module_state_mapping.pop(module, None)
    module.__class__ = cls


def _mesh(device_type: str) -> Any:
    """A 1-D device mesh over every process (a mesh spanning the world uses the default group)."""
    from torch.distributed.device_mesh import init_device_mesh

    return init_device_mesh(device_type, (world()[1],))


def shard_phase(model: nn.Module, device_type: str, mixed_precision: str = "no",
                reshard_after_forward: bool = True) -> ShardedModel:
    """`fully_shard` each decoder layer of `model.llm`, then the root (`model`: everything else).
    `mixed_precision` "bf16": computation in bf16 from fp32 shards, gradients reduced in fp32."""
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    mesh = _mesh(device_type)
    policy = MixedPrecisionPolicy()
    if mixed_precision == "bf16":
        policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    groups: list[tuple[nn.Module, type]] = []
    home = next(model.parameters()).device
    scalars = {p for p in model.parameters() if p.dim() == 0}  # FSDP2 shards tensors of >= 1 dimension
    layers = decoder_layers(model.llm)
    if not layers:
        logger.warning("fsdp: no decoder layers found in %s: the whole model is one group", type(model.llm).__name__)
    for layer in layers:
        groups.append((layer, type(layer)))
        fully_shard(layer, mesh=mesh, reshard_after_forward=reshard_after_forward, mp_policy=policy,
                    ignored_params=scalars)
    groups.append((model, type(model)))
    # the root: kept gathered from forward to backward
    fully_shard(model, mesh=mesh, mp_policy=policy, ignored_params=scalars)
    model.set_reduce_scatter_unused_params(True)  # see the module docstring: unused tensors reduce as 0
    release_freed_memory(device_type)
    return ShardedModel(model, groups, scalars, home)

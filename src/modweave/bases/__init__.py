"""Ready-made base models built from real checkpoints.

- `instructblip.build_instructblip(name_or_path)`: the PathWeave base (InstructBLIP-Vicuna-7B layout).
- `gguf.resolve_name_or_path(value)`: `gguf:<package>/<file>.gguf` or a `.gguf` path -> a local
  transformers directory (converted once and cached), used for the offline real-small tier.
"""

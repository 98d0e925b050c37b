"""What task=train assembles: config builders, adapters, the trainer and its sampler, the
validation and tracking callbacks, checkpoints. Imported by tasks only, so these modules
import torch, transformers, peft and trl at module level."""

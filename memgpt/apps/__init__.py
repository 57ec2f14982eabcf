"""Applications built on memgpt backbones."""

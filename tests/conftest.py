"""Shared pytest setup: make tests/ importable helpers visible and keep torch to the machine's cores."""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

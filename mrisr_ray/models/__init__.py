"""The networks of both GANs, one architecture per file (`cpce.py`, `circle.py`), the VGG-19
feature extractor (`vgg.py`) and their torch-free config sections (`configs.py`). Nothing is
imported here, so `mrisr_ray.models.configs` can be read without torch."""

"""Standalone training of ResNet48 subnets with the official recipe, and ground-truth building.

    python pretrain.py run --arch CODE --image_dir DIR --batch_size 1024 --max_epoch 90 --warmup 2
    python -m paddle.distributed.launch --gpus 0,1,2,3 pretrain.py run --arch CODE --image_dir DIR ...
    python pretrain.py gt --archs ARCHS.json --ids arch1,arch7 --config configs/demo.yaml --out GT.json

The entry point only: the training itself (recipe, resume, ground truth) is supernet/standalone.py.
"""

import sys

from supernet.standalone import main

if __name__ == "__main__":
    sys.exit(main())

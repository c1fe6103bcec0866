"""Where and how a process runs: device and ranks (`runtime.device`), mixed precision (`runtime.amp`),
CPU speed switches and the convolution seam (`runtime.cpu_speed`, `runtime.conv`, `runtime.onednn_conv`),
and training checkpoints (`runtime.checkpoint`). Below the model: it knows nothing of supernets."""

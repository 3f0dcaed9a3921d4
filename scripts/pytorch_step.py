"""The three training steps of benches/step.rs in PyTorch on the CPU, under each precision
Lightning names, timed in one process. Prints one JSON object: for each model, the median
step time in seconds per precision, and the model's product FLOPs per step.

Models and step as in the Rust bench (same shapes, same layers, forward + f32 loss
mean(y^2) + backward, no optimizer update, inputs not tracked):
- mlp: 16 Linear(256, 256) + ReLU and a Linear(256, 16) head, batch 2048;
- cnn: Conv2d 3->16, 16->16, avg-pool 2, 16->32 (3x3, same padding, ReLU after each) and
  a Linear(32 * 16 * 16, 10) head, batch 16 of 3 x 32 x 32;
- transformer: one pre-norm block, width 128, 4 heads, batch 4 x 128 tokens: LayerNorm,
  fused q/k/v Linear, scaled dot-product attention, output Linear, residual; LayerNorm,
  Linear(128, 512), GELU, Linear(512, 128), residual.
Run by scripts/compare-pytorch.sh, which installs PyTorch into a virtual environment.
"""
import json
import statistics
import sys
import time

import torch
import torch.nn.functional as F

PRECISIONS = ["32-true", "bf16-mixed", "bf16-true", "16-mixed", "16-true"]


class Mlp(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = torch.nn.ModuleList(torch.nn.Linear(256, 256) for _ in range(16))
        self.head = torch.nn.Linear(256, 16)

    def forward(self, x):
        for layer in self.layers:
            x = torch.relu(layer(x))
        return self.head(x)


class Cnn(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = torch.nn.Conv2d(3, 16, 3, padding="same")
        self.c2 = torch.nn.Conv2d(16, 16, 3, padding="same")
        self.c3 = torch.nn.Conv2d(16, 32, 3, padding="same")
        self.head = torch.nn.Linear(32 * 16 * 16, 10)

    def forward(self, x):
        h = torch.relu(self.c1(x))
        h = F.avg_pool2d(torch.relu(self.c2(h)), 2)
        h = torch.relu(self.c3(h))
        return self.head(h.flatten(1))


class Block(torch.nn.Module):
    def __init__(self, width=128, heads=4):
        super().__init__()
        self.heads = heads
        self.norm1 = torch.nn.LayerNorm(width)
        self.qkv = torch.nn.Linear(width, 3 * width)
        self.out = torch.nn.Linear(width, width)
        self.norm2 = torch.nn.LayerNorm(width)
        self.up = torch.nn.Linear(width, 4 * width)
        self.down = torch.nn.Linear(4 * width, width)

    def forward(self, x):
        batch, seq, width = x.shape
        q, k, v = self.qkv(self.norm1(x)).split(width, dim=2)
        split = lambda t: t.reshape(batch, seq, self.heads, width // self.heads).transpose(1, 2)
        context = F.scaled_dot_product_attention(split(q), split(k), split(v))
        x = x + self.out(context.transpose(1, 2).reshape(batch, seq, width))
        return x + self.down(F.gelu(self.up(self.norm2(x))))


def product_flops():
    """Multiply-adds x 2 of the products (linear, convolution, attention) in one step:
    forward, the weight gradient, and the input gradient where the input is tracked."""
    def linear(rows, fan_in, fan_out, input_tracked=True):
        return 2 * rows * fan_in * fan_out * (3 if input_tracked else 2)

    def conv(batch, side, cin, cout, input_tracked=True):
        return 2 * batch * side * side * cin * cout * 9 * (3 if input_tracked else 2)

    mlp = linear(2048, 256, 256, False) + 15 * linear(2048, 256, 256) + linear(2048, 256, 16)
    cnn = conv(16, 32, 3, 16, False) + conv(16, 32, 16, 16) + conv(16, 16, 16, 32) + linear(16, 32 * 16 * 16, 10)
    tokens, width, heads, seq = 4 * 128, 128, 4, 128
    # Attention: scores q k^T and context p v, each 2 * batch * heads * seq^2 * head_dim,
    # three products per step each (forward, two gradients).
    attention = 2 * 3 * (2 * 4 * heads * seq * seq * (width // heads))
    transformer = (linear(tokens, width, 3 * width) + linear(tokens, width, width) + linear(tokens, width, 4 * width)
                   + linear(tokens, 4 * width, width) + attention)
    return {"mlp": mlp, "cnn": cnn, "transformer": transformer}


def build(name):
    torch.manual_seed(1)
    if name == "mlp":
        return Mlp(), torch.randn(2048, 256)
    if name == "cnn":
        return Cnn(), torch.randn(16, 3, 32, 32)
    return Block(), torch.randn(4, 128, 128)


def step_fn(name, precision):
    """A closure running one step of `name` under `precision`."""
    param_dtype = {"bf16-true": torch.bfloat16, "16-true": torch.float16}.get(precision, torch.float32)
    net, x = build(name)
    net, x = net.to(param_dtype), x.to(param_dtype)
    autocast = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(precision)
    # 16-mixed scales the loss, as a GradScaler does (a power of two: exact).
    scale = 65536.0 if precision == "16-mixed" else 1.0

    def step():
        with torch.autocast("cpu", dtype=autocast, enabled=autocast is not None):
            y = net(x)
        loss = y.float().pow(2).mean() * scale
        loss.backward()
        net.zero_grad(set_to_none=True)

    return step


def median_seconds(step, warmup=3, runs=15):
    for _ in range(warmup):
        step()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    models = sys.argv[1:] or ["mlp", "cnn", "transformer"]
    flops = product_flops()
    result = {"torch": torch.__version__, "threads": torch.get_num_threads(), "models": {}}
    for name in models:
        times = {p: median_seconds(step_fn(name, p)) for p in PRECISIONS}
        result["models"][name] = {"seconds": times, "product_flops": flops[name]}
    print(json.dumps(result))


if __name__ == "__main__":
    main()

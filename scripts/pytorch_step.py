"""The MLP step of benches/step.rs in PyTorch on the CPU, under each precision Lightning
names, timed in one process; prints step time and ratio to PyTorch's own 32-true.

Model and step as in the Rust bench: 16 Linear(256, 256) + ReLU layers and a Linear(256, 16)
head, a batch of 2048 normal inputs, loss = mean(f32(y)^2), backward (no optimizer update).
Run by scripts/compare-pytorch.sh, which installs PyTorch into a virtual environment.
"""
import statistics
import time

import torch


def model(dtype):
    torch.manual_seed(1)
    layers = []
    for _ in range(16):
        layers += [torch.nn.Linear(256, 256), torch.nn.ReLU()]
    layers.append(torch.nn.Linear(256, 16))
    return torch.nn.Sequential(*layers).to(dtype)


def step_fn(precision):
    """A closure running one step under `precision`."""
    param_dtype = {"bf16-true": torch.bfloat16, "16-true": torch.float16}.get(precision, torch.float32)
    net = model(param_dtype)
    x = torch.randn(2048, 256).to(param_dtype)
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


def median_seconds(step, warmup=2, runs=10):
    for _ in range(warmup):
        step()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    print(f"PyTorch {torch.__version__}, {torch.get_num_threads()} threads")
    precisions = ["32-true", "bf16-mixed", "bf16-true", "16-mixed", "16-true"]
    results = {p: median_seconds(step_fn(p)) for p in precisions}
    base = results["32-true"]
    print(f"{'PyTorch mlp 16x256 b2048':<30} {'column':>12} {'time':>11} {'ratio':>7}")
    for p in precisions:
        print(f"{'':<30} {p:>12} {results[p] * 1e3:>9.2f}ms {results[p] / base:>7.3f}")


if __name__ == "__main__":
    main()

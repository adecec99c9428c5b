"""Reference timing for `make bench` (optional, TF_PYTHON=/path/to/python with tensorflow 2.15 + voxelmorph 0.2):
one train.py step (MSE + 0.01 Grad('l2', loss_mult=2), Adam 1e-4) of the published architecture (half-resolution
U-Net) at the given shape, TF on the CPU with 2 threads; median of 3 steps after a warm-up, and peak RSS.
Not used at run time or by the tests."""
import inspect
import os
import resource
import sys
import time

os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
if not hasattr(inspect, "getargspec"):  # neurite 0.2 on Python >= 3.11
    inspect.getargspec = lambda f: tuple(inspect.getfullargspec(f))[:4]
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import voxelmorph as vxm  # noqa: E402

threads = int(os.environ.get("THREADS", "2"))
tf.config.threading.set_intra_op_parallelism_threads(threads)
tf.config.threading.set_inter_op_parallelism_threads(1)
shape = tuple(int(x) for x in sys.argv[1:4])
model = vxm.networks.VxmDense(shape, nb_unet_features=[[16, 32, 32, 32], [32, 32, 32, 32, 32, 16, 16]],
                              int_steps=7, int_resolution=2, svf_resolution=2)
mse, grad = vxm.losses.MSE().loss, vxm.losses.Grad("l2", loss_mult=2).loss
opt = tf.keras.optimizers.Adam(1e-4)
x = np.random.rand(1, *shape, 1).astype(np.float32)
y = np.random.rand(1, *shape, 1).astype(np.float32)


@tf.function
def step(a, b):
    with tf.GradientTape() as tape:
        out = model([a, b], training=True)
        loss = mse(b, out[0]) + 0.01 * tf.reduce_mean(grad(None, out[1]))
    g = tape.gradient(loss, model.trainable_weights)
    opt.apply_gradients(zip(g, model.trainable_weights))
    return loss


step(x, y)
times = []
for _ in range(3):
    t0 = time.time()
    step(x, y).numpy()
    times.append(time.time() - t0)
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(f"| TensorFlow {tf.__version__} CPU, {threads} threads | published (half-res U-Net) | "
      f"{'x'.join(map(str, shape))} | mse | {sorted(times)[1]:.3f} s | | {rss:.0f} MB |")

"""The pictures: image grids, input-vs-reconstruction pairs, learning curves.

Figures are drawn with matplotlib's object API on the Agg canvas, never through
pyplot's global state, so the library is safe to use from servers and threads.
"""

import math
import os

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from tfvae import files


def is_picture(image_shape):
    """Whether examples of `image_shape` draw as pictures: grey or RGB images. Other
    channel counts (2, or 4 and more: masks, spectral bands) have no colours to show."""
    return image_shape is not None and image_shape[-1] in (1, 3)


def _as_images(examples, image_shape):
    """`[n, height, width]` (grey) or `[n, height, width, 3]` arrays to draw."""
    examples = np.asarray(examples)
    if image_shape is None:  # not a picture: draw each example as a one-row strip
        return examples.reshape(len(examples), 1, -1)
    images = examples.reshape(len(examples), *image_shape)
    return images[..., 0] if image_shape[-1] == 1 else images


def image_grid(examples, image_shape, ncols=None):
    """Tiles n examples into one `[rows * height, ncols * width(, 3)]` mosaic, 1-pixel gaps."""
    images = _as_images(examples, image_shape)
    n = len(images)
    ncols = ncols or math.ceil(math.sqrt(n))
    nrows = math.ceil(n / ncols)
    height, width = images.shape[1:3]
    grid = np.ones((nrows * (height + 1) - 1, ncols * (width + 1) - 1, *images.shape[3:]))
    for i, image in enumerate(images):
        row, col = divmod(i, ncols)
        grid[row * (height + 1) : row * (height + 1) + height, col * (width + 1) : col * (width + 1) + width] = image
    return grid


def _save(figure, path):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    FigureCanvasAgg(figure)
    with files.atomic_path(path) as temporary:  # the name keeps the suffix that picks the format
        figure.savefig(temporary, dpi=100, bbox_inches="tight")


def value_range(model):
    """The range a model's examples take: 0 .. 255 for 8-bit likelihoods, else 0 .. 1."""
    levels = model.likelihood_layer.data_levels
    return (0.0, float(levels - 1)) if levels else (0.0, 1.0)


def save_image_grid(examples, image_shape, path, title=None, ncols=None, value_range=(0.0, 1.0)):
    """Writes a PNG grid of examples with values in `value_range` (black to white)."""
    low, high = value_range
    examples = np.clip((np.asarray(examples, np.float32) - low) / (high - low), 0.0, 1.0)
    grid = image_grid(examples, image_shape, ncols)
    figure = Figure(figsize=(6, 6 * grid.shape[0] / grid.shape[1] + (0.4 if title else 0)))
    axes = figure.add_subplot()
    axes.imshow(grid, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    axes.set_axis_off()
    if title:
        axes.set_title(title)
    _save(figure, path)
    return path


def save_reconstructions(inputs, reconstructions, image_shape, path, ncols=8, value_range=(0.0, 1.0)):
    """Writes inputs (odd rows) above their reconstructions (even rows)."""
    inputs, reconstructions = np.asarray(inputs), np.asarray(reconstructions)
    rows = []
    for start in range(0, len(inputs), ncols):
        rows.extend([inputs[start : start + ncols], reconstructions[start : start + ncols]])
    interleaved = np.concatenate(rows)
    return save_image_grid(
        interleaved,
        image_shape,
        path,
        title="inputs (odd rows) and reconstructions",
        ncols=ncols,
        value_range=value_range,
    )


def save_learning_curve(history, path, loss_name="negative ELBO"):
    """Writes the loss per epoch, train and validation, from a run's history dict."""
    figure = Figure(figsize=(6, 4))
    axes = figure.add_subplot()
    for split, style in (("train", "-o"), ("valid", "-s")):
        values = history.get(split, {}).get("loss")
        if values:
            axes.plot(range(1, len(values) + 1), values, style, markersize=3, label=split)
    axes.set_xlabel("epoch")
    axes.set_ylabel(f"{loss_name} (nats per example)")
    axes.set_title("learning curve")
    axes.grid(alpha=0.3)
    axes.legend()
    _save(figure, path)
    return path


def _draws_images(model):
    """Whether the pictures show draws of x: an autoregressive likelihood's mean is only
    its greedy mean, a smooth image no draw resembles."""
    return model.likelihood_layer.autoregressive


def save_class_samples(model, path, per_class=10, seed=0):
    """One row of generated samples per class of a conditional model."""
    labels = np.repeat(np.arange(model.num_classes), per_class)
    samples = model.sample(len(labels), labels=labels, seed=seed, draw=_draws_images(model)).numpy()
    return save_image_grid(
        samples,
        model.image_shape,
        path,
        ncols=per_class,
        value_range=value_range(model),
        title=f"samples from the prior, one row per class (0 to {model.num_classes - 1})",
    )


def save_prior_samples(model, path, n=64, seed=0):
    """Samples from the prior: a grid for a VAE, a row per class for a conditional VAE."""
    if model.conditional:
        return save_class_samples(model, path, seed=seed)
    return save_image_grid(
        model.sample(n, seed=seed, draw=_draws_images(model)).numpy(),
        model.image_shape,
        path,
        title=f"{n} samples from the prior" + (", drawn pixel by pixel" if _draws_images(model) else ""),
        value_range=value_range(model),
    )


def save_run_pictures(model, examples, history, run_dir, seed=0, n=64, labels=None):
    """learning_curve.png in `run_dir`, and for pictures (`is_picture`) samples.png
    (models with a prior) and reconstructions.png: a table's rows drawn as strips of
    pixels would mean nothing."""
    written = []
    if is_picture(model.image_shape):
        inputs = examples[:32]
        input_labels = None if labels is None else labels[:32]
        if model.has_prior:
            written.append(save_prior_samples(model, os.path.join(run_dir, "samples.png"), n, seed))
        reconstructions = model.reconstruct(inputs, labels=input_labels).numpy()
        written.append(
            save_reconstructions(
                inputs,
                reconstructions,
                model.image_shape,
                os.path.join(run_dir, "reconstructions.png"),
                value_range=value_range(model),
            )
        )
    written.append(save_learning_curve(history, os.path.join(run_dir, "learning_curve.png"), model.loss_name))
    return written


def save_latent_map(model, examples, path, batch_size=500, labels=None):
    """A scatter of the codes (posterior means E_q[z|x] for a VAE): the latent plane itself
    for 2-D latents, otherwise their first two principal components; coloured by class
    when labels are given."""
    means = np.concatenate(
        [
            model.latent_code(
                examples[i : i + batch_size],
                labels=None if labels is None or not model.conditional else labels[i : i + batch_size],
            ).numpy()
            for i in range(0, len(examples), batch_size)
        ]
    )
    if means.shape[1] > 2:
        from sklearn.decomposition import PCA

        pca = PCA(n_components=2, random_state=0)
        points = pca.fit_transform(means)
        explained = pca.explained_variance_ratio_.sum()
        axis_names = ("PC 1", "PC 2", f"latent codes, first two principal components ({explained:.0%} of variance)")
    else:
        points = np.pad(means, ((0, 0), (0, 2 - means.shape[1])))
        axis_names = ("z_1", "z_2", "latent codes")
    figure = Figure(figsize=(5, 5))
    axes = figure.add_subplot()
    colours = {} if labels is None else dict(c=labels, cmap="tab10")
    scatter = axes.scatter(points[:, 0], points[:, 1], s=4, alpha=0.5, **colours)
    if labels is not None:
        figure.colorbar(scatter, ax=axes, label="class")
    axes.set_xlabel(axis_names[0])
    axes.set_ylabel(axis_names[1])
    axes.set_title(axis_names[2], fontsize=9)
    _save(figure, path)
    return path


def save_interpolation(model, start, end, path, steps=10, labels=None):
    """Decodes the straight line between the codes of two inputs, ends included (a
    conditional model decodes the whole line with the first input's class)."""
    pair_labels = None if labels is None else np.asarray(labels[:2])
    z_start, z_end = model.latent_code(np.stack([start, end]), labels=pair_labels).numpy()
    weights = np.linspace(0.0, 1.0, steps)[:, None]
    z = ((1 - weights) * z_start + weights * z_end).astype(np.float32)  # [steps, latent_dim]
    line_labels = None if labels is None else np.full(steps, labels[0])
    images = model.decode_mean(z, labels=line_labels).numpy()
    row = np.concatenate([start[None], images, end[None]])
    return save_image_grid(
        row,
        model.image_shape,
        path,
        title="input, interpolation in z, input",
        ncols=len(row),
        value_range=value_range(model),
    )

"""The model commands of `tfvae` (train, sample, evaluate, report, export): their flags
and handlers over the Python API. `tfvae.cli` loads this module, and with it TensorFlow,
for every command but `serve`."""

import argparse
import contextlib
import csv
import hashlib
import io
import json
import math
import os
import signal
import sys

import numpy as np

from tfvae import files, memory, seeding
from tfvae.cli_arguments import (
    INTERRUPTED,
    image_size,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
    rate,
    units,
    version,
)
from tfvae.data import LIKELIHOOD_FAMILIES, SPLITS, available_datasets, table_columns
from tfvae.errors import TfvaeError
from tfvae.evaluation import evaluate
from tfvae.exporting import PARTS, check_arguments, export
from tfvae.input_pipeline import AUGMENTATIONS
from tfvae.models.hierarchical import TOP_DOWN
from tfvae.models.vae import OBJECTIVES
from tfvae.networks import ARCHITECTURES
from tfvae.posteriors import POSTERIORS
from tfvae.priors import PRIORS
from tfvae.training import (
    CONFIG_FILE,
    HISTORY_FILE,
    LEARNING_RATE_SCHEDULES,
    MODELS,
    TrainConfig,
    load_run,
    load_run_data,
    read_config,
    same_data,
    train,
)


def add_commands(subparsers):
    """Adds train, sample, evaluate, report and export to `subparsers`."""
    for add in (_add_train, _add_sample, _add_evaluate, _add_report, _add_export):
        add(subparsers)


def _record_given(namespace, action):
    """Notes that the command line gave `action`'s option: argparse keeps only the values,
    and `--resume` must tell a flag the user typed from a default."""
    namespace.given = {**getattr(namespace, "given", {}), action.dest: action.option_strings[0]}


class _Store(argparse.Action):
    """argparse's default action (store the converted value), recording the option."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, values)
        _record_given(namespace, self)


class _StoreConstant(argparse.Action):
    """A flag storing `const` (store_true / store_false), recording the option."""

    def __init__(self, option_strings, dest, const, default=None, help=None):
        super().__init__(option_strings, dest, nargs=0, const=const, default=default, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, self.const)
        _record_given(namespace, self)


def _add_train(subparsers):
    defaults = TrainConfig(data="", out="")
    p = subparsers.add_parser(
        "train",
        help="train a VAE (one layer, conditional or not, or a hierarchy) or an autoencoder; write a run directory",
        description="Train a model with Keras fit; writes DIR/model.keras, history.json, config.json and PNG pictures.",
    )
    p.register("action", None, _Store)
    p.add_argument(
        "--data",
        help=f"a bundled dataset ({', '.join(available_datasets())}), an .npz path "
        "with 'train' (and optionally 'valid', 'test') arrays or Keras' x_train, y_train, "
        "x_test, y_test, a .csv table, a folder of "
        "images (subfolders are classes) or of TFRecord shards (train streamed); needed "
        "unless --resume",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="the run directory to write")
    p.add_argument(
        "--image-size",
        type=image_size,
        default=defaults.image_size,
        metavar="HEIGHT,WIDTH",
        help="a folder of images: resize them to this as they are read (bilinear, as Keras does); "
        "default: they must all have one size",
    )
    p.add_argument(
        "--model",
        choices=MODELS,
        default=defaults.model,
        help="vae; hierarchical: a ladder VAE with --latent-dims; or autoencoder: the "
        "deterministic baseline (no prior, no sampling)",
    )
    p.add_argument(
        "--conditional",
        action=_StoreConstant,
        const=True,
        default=False,
        help="a conditional VAE p(x|y, z) on the data's class labels (train_labels, ...)",
    )
    p.add_argument(
        "--prior",
        choices=PRIORS,
        default=defaults.prior,
        help="p(z): standard_normal, or vamp (the VampPrior, --pseudo-inputs components)",
    )
    p.add_argument(
        "--pseudo-inputs",
        type=positive_int,
        default=defaults.pseudo_inputs,
        help="VampPrior components K (with --prior vamp)",
    )
    p.add_argument("--epochs", type=positive_int, default=defaults.epochs)
    p.add_argument("--latent-dim", type=positive_int, default=defaults.latent_dim)
    p.add_argument(
        "--latent-dims",
        type=units,
        default=defaults.latent_dims,
        metavar="D1,D2,...",
        help="--model hierarchical: the sizes of z_1 ... z_L, bottom first (e.g. 40,40)",
    )
    p.add_argument(
        "--conditional-layers",
        type=non_negative_int,
        default=defaults.conditional_layers,
        metavar="K",
        help="--model hierarchical: hidden layers inside each p(z_l | z_l+1) and q(z_l | z_l+1, x) "
        "(0: a linear map of the states)",
    )
    p.add_argument(
        "--top-down",
        choices=TOP_DOWN,
        default=defaults.top_down,
        help="--model hierarchical: q(z_l | z_l+1, x) reads the top-down state of p(z_l | z_l+1) (shared: "
        "the ladder) or a network of its own (separate: Tomczak & Welling's HVAE)",
    )
    p.add_argument(
        "--posterior",
        type=_posteriors,
        default=defaults.posterior,
        metavar="{" + ",".join(POSTERIORS) + "}",
        help="q(z|x): a Gaussian with diagonal or full covariance, or iaf (the diagonal "
        "Gaussian through --flow-steps inverse autoregressive flow steps); with --model "
        "hierarchical one per layer, bottom first, may be given (iaf,diagonal: flows below a "
        "Gaussian top); under an IAF top --prior vamp mixes the flow's base Gaussians",
    )
    p.add_argument(
        "--flow-steps", type=positive_int, default=defaults.flow_steps, help="IAF steps (with --posterior iaf)"
    )
    p.add_argument(
        "--likelihood",
        choices=LIKELIHOOD_FAMILIES,
        default=defaults.likelihood,
        help="p(x|z): bernoulli (binary data), gaussian (continuous), or a discretised "
        "logistic (mixture) for 8-bit data 0..255, reported in bits/dim; "
        "discretized_logistic_mixture_coupled couples a colour pixel's channels (PixelCNN++); "
        "pixelcnn_logistic_mixture also reads the pixels before each one (a PixelCNN decoder)",
    )
    p.add_argument(
        "--likelihood-scale",
        type=non_negative_float,
        default=defaults.likelihood_scale,
        help="a fixed standard deviation of the gaussian likelihood (default 0: learned)",
    )
    p.add_argument(
        "--mixture-components",
        type=positive_int,
        default=defaults.mixture_components,
        help="components per dimension (per pixel when coupled) of the logistic mixtures",
    )
    p.add_argument(
        "--pixelcnn-filters",
        type=positive_int,
        default=defaults.pixelcnn_filters,
        help="channels of the pixelcnn_logistic_mixture likelihood's masked network",
    )
    p.add_argument(
        "--pixelcnn-blocks",
        type=positive_int,
        default=defaults.pixelcnn_blocks,
        help="gated residual blocks of that network (its field reaches 3 + 2 x blocks rows up)",
    )
    p.add_argument(
        "--pixelcnn-dropout",
        type=rate,
        default=defaults.pixelcnn_dropout,
        help="dropout rate inside that network's blocks in training (PixelCNN++ used 0.5; 0: off)",
    )
    p.add_argument(
        "--num-samples", type=positive_int, default=defaults.num_samples, help="Monte Carlo samples of z per input"
    )
    p.add_argument(
        "--objective",
        choices=OBJECTIVES,
        default=defaults.objective,
        help="elbo, or iwae: the --num-samples-sample importance-weighted bound",
    )
    p.add_argument("--batch-size", type=positive_int, default=defaults.batch_size)
    p.add_argument("--arch", choices=ARCHITECTURES, default=defaults.arch)
    p.add_argument(
        "--hidden-units",
        type=units,
        default=defaults.hidden_units,
        metavar="W1,W2,...",
        help="hidden widths (encoder order; the decoder mirrors)",
    )
    p.add_argument(
        "--filters",
        type=units,
        default=defaults.filters,
        metavar="F1,F2,...",
        help="channels of the stride-2 convolutions (--arch conv)",
    )
    p.add_argument(
        "--residual-blocks",
        type=non_negative_int,
        default=defaults.residual_blocks,
        metavar="N",
        help="residual blocks (two 3x3 convolutions and a skip) at each resolution (--arch conv)",
    )
    p.add_argument(
        "--dropout",
        type=rate,
        default=defaults.dropout,
        help="dropout rate after each hidden layer of the MLPs in training (--arch mlp or gated; 0: off)",
    )
    p.add_argument(
        "--decoder-dropout",
        type=rate,
        default=defaults.decoder_dropout,
        metavar="P",
        help="the decoder's own dropout rate (default: --dropout's), e.g. to regularise p(x|z) alone",
    )
    p.add_argument("--activation", default=defaults.activation, help="a Keras activation name")
    p.add_argument("--beta", type=non_negative_float, default=defaults.beta, help="KL weight (beta-VAE when > 1)")
    p.add_argument(
        "--kl-warmup-epochs",
        type=non_negative_int,
        default=defaults.kl_warmup_epochs,
        help="raise the KL weight linearly to beta over this many epochs",
    )
    p.add_argument(
        "--free-bits",
        type=non_negative_float,
        default=defaults.free_bits,
        help="a floor in nats on the batch's mean KL in the training objective (0: off)",
    )
    p.add_argument("--learning-rate", type=positive_float, default=defaults.learning_rate)
    p.add_argument(
        "--lr-schedule",
        choices=LEARNING_RATE_SCHEDULES,
        default=defaults.lr_schedule,
        help="cosine: decay the learning rate each epoch along a half cosine to nearly 0 at the last epoch",
    )
    p.add_argument(
        "--clip-norm",
        type=non_negative_float,
        default=defaults.clip_norm,
        help="clip the gradients' global norm to this (0: off)",
    )
    p.add_argument(
        "--ema-momentum",
        type=non_negative_float,
        default=defaults.ema_momentum,
        help="validate and keep a moving average of the weights with this momentum (e.g. 0.999; 0: off)",
    )
    p.add_argument(
        "--weight-decay",
        type=non_negative_float,
        default=defaults.weight_decay,
        help="decoupled (AdamW) weight decay of the kernels (0: off)",
    )
    p.add_argument(
        "--mc-kl",
        dest="analytic_kl",
        action=_StoreConstant,
        const=False,
        default=True,
        help="estimate the KL by Monte Carlo even where a closed form exists",
    )
    p.add_argument(
        "--patience",
        type=non_negative_int,
        default=defaults.patience,
        help="stop after this many epochs without a better validation loss (0: never)",
    )
    p.add_argument(
        "--shuffle-window",
        type=positive_int,
        default=defaults.shuffle_window,
        help="examples shuffled together when train is streamed from TFRecord shards",
    )
    p.add_argument(
        "--augment",
        choices=AUGMENTATIONS,
        default=defaults.augment,
        help="hflip: flip each training image left to right with probability 1/2 (photographs; not digits or text)",
    )
    p.add_argument("--seed", type=non_negative_int, default=defaults.seed)
    p.add_argument("--overwrite", action="store_true", help="replace an existing run in DIR")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the unfinished run in DIR from its last completed epoch (its "
        "config.json gives every other setting); with --epochs N, extend the run, finished or not, to N epochs",
    )
    p.add_argument("--no-pictures", dest="pictures", action="store_false")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=_train)


def _posteriors(text):
    if any(name not in POSTERIORS for name in text.split(",")):
        raise argparse.ArgumentTypeError(
            f"expected one of {', '.join(POSTERIORS)}, or one per layer such as iaf,diagonal, got {text!r}"
        )
    return text


def _train(args):
    if args.data is None and not args.resume:
        raise TfvaeError("--data is required for a new run (or pass --resume to continue one).")
    if args.resume:
        _refuse_changes_on_resume(args)
    else:
        _refuse_options_that_do_nothing(args)
    fields = {f: getattr(args, f) for f in TrainConfig.__dataclass_fields__}
    fields["data"] = fields["data"] or ""
    # SIGTERM ends the run like Ctrl-C: the last completed epoch stays checkpointed.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        result = train(
            TrainConfig(**fields),
            overwrite=args.overwrite,
            resume=args.resume,
            verbose=0 if args.quiet else 1,
            pictures=args.pictures,
            epochs=args.epochs if args.resume and "epochs" in getattr(args, "given", {}) else None,
        )
    except KeyboardInterrupt:
        print(
            f"tfvae train: interrupted; continue from the last completed epoch with "
            f"`tfvae train --out {args.out} --resume`",
            file=sys.stderr,
        )
        return INTERRUPTED
    print(train_summary(result.run_dir, result.history, result.model.loss_name))
    return 0


def _has_posterior(args):
    return args.model != "autoencoder"


# Options whose default is no "off" value, and those an autoencoder (no posterior, no KL)
# has no use for: given where they do nothing, they are refused rather than ignored (the
# rest, such as --residual-blocks without --arch conv, TrainConfig refuses by value).
_WHEN_OPTIONS_APPLY = {
    "pseudo_inputs": (lambda args: args.prior == "vamp", "without --prior vamp"),
    "flow_steps": (lambda args: "iaf" in args.posterior.split(","), "without --posterior iaf"),
    "mixture_components": (
        lambda args: "mixture" in args.likelihood,
        "without a logistic mixture likelihood (--likelihood discretized_logistic_mixture...)",
    ),
    **{
        dest: (
            lambda args: args.likelihood == "pixelcnn_logistic_mixture",
            "without --likelihood pixelcnn_logistic_mixture",
        )
        for dest in ("pixelcnn_filters", "pixelcnn_blocks", "pixelcnn_dropout")
    },
    "filters": (lambda args: args.arch == "conv", "without --arch conv"),
    **{
        dest: (lambda args: args.arch != "conv", "with --arch conv (it drops the MLPs' hidden units)")
        for dest in ("dropout", "decoder_dropout")
    },
    "top_down": (lambda args: args.model == "hierarchical", "without --model hierarchical"),
    "latent_dim": (
        lambda args: args.model != "hierarchical",
        "with --model hierarchical, whose layers' sizes are --latent-dims",
    ),
    **{
        dest: (_has_posterior, "with --model autoencoder, which has no posterior, prior or KL")
        for dest in ("posterior", "beta", "kl_warmup_epochs", "free_bits", "objective", "num_samples", "analytic_kl")
    },
}


def _refuse_options_that_do_nothing(args):
    for dest, flag in getattr(args, "given", {}).items():
        applies, when = _WHEN_OPTIONS_APPLY.get(dest, (None, None))
        if applies is not None and not applies(args):
            raise TfvaeError(f"{flag} does nothing {when}; leave it out.")


def _refuse_changes_on_resume(args):
    """`--resume` continues a run as its config.json describes it; an option given with it
    that would change the run is refused rather than silently dropped."""
    if not os.path.isfile(os.path.join(args.out, CONFIG_FILE)):
        return  # `train` says there is no run to resume
    run = read_config(args.out)
    for dest, flag in getattr(args, "given", {}).items():
        if dest in ("out", "epochs") or dest not in TrainConfig.__dataclass_fields__:
            continue  # a new --epochs extends the run (`resume_config` checks it)
        given, recorded = getattr(args, dest), getattr(run, dest)
        if not (same_data(given, recorded) if dest == "data" else given == recorded):
            change = (
                f"would change the run's {dest} ({recorded} "
                if isinstance(given, bool)
                else f"{_shown(given)} differs from the run's {_shown(recorded)} ("
            )
            raise TfvaeError(
                f"{flag} {change}in {os.path.join(args.out, CONFIG_FILE)}): --resume continues the run as it "
                f"was configured; leave out {flag}, or train a new run in another --out."
            )


def _shown(value):
    return ",".join(map(str, value)) if isinstance(value, (tuple, list)) else str(value)


def train_summary(run_dir, history, loss_name):
    """The line `tfvae train` ends with: the figures of the model it saved, the best
    epoch's (model.keras holds those weights; with --patience the last epoch's are worse)."""
    best = history["best_epoch"] - 1
    summary = (
        f"wrote {run_dir}: the model of epoch {best + 1} of {history['epochs']}, "
        f"valid loss {history['valid']['loss'][best]:.3f}"
    )
    if "test" in history:
        summary += f", test loss {history['test']['loss']:.3f}"
    summary += f" ({loss_name}, nats per example)"
    if "bits_per_dim" in history:
        bits = history["bits_per_dim"]
        summary += f"; bits/dim: valid {bits['valid'][best]:.4f}"
        if "test" in bits:
            summary += f", test {bits['test']:.4f}"
    return summary


def _add_sample(subparsers):
    p = subparsers.add_parser(
        "sample",
        help="generate examples from a trained run",
        description="Draw z from the prior, decode, and write a PNG grid, a .npy array or a table's rows as .csv.",
    )
    p.add_argument("run_dir", metavar="DIR", help="a run directory written by `tfvae train`")
    p.add_argument("--n", type=positive_int, default=64, help="number of samples")
    p.add_argument(
        "--out", required=True, metavar="FILE", help="a .png grid, a .npy array, or a .csv of a table's rows"
    )
    p.add_argument(
        "--seed",
        type=non_negative_int,
        default=None,
        help="the draws' seed (default: a fresh one, which the output line names so it can be drawn again)",
    )
    p.add_argument(
        "--draw",
        action="store_true",
        help="draw x from p(x|z) (binary pixels of a Bernoulli, a PixelCNN's images pixel by pixel) "
        "instead of writing its mean",
    )
    p.add_argument(
        "--labels",
        type=_labels,
        default=None,
        metavar="Y1,Y2,...",
        help="conditional models: the classes to generate, repeated to --n (default: every class in turn); "
        "no more of them than --n",
    )
    p.set_defaults(handler=_sample)


def _labels(text):
    try:
        return tuple(non_negative_int(part) for part in text.split(","))
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected comma-separated class ids such as 0,1,7, got {text!r}") from None


def _sample(args):
    from tfvae import plots

    extension = os.path.splitext(args.out)[1].lower()
    if extension not in (".png", ".npy", ".csv"):
        raise TfvaeError(f"--out must end in .png, .npy or .csv (a table's rows); got {args.out!r}.")
    model = load_run(args.run_dir)
    seed = seeding.fresh_seed() if args.seed is None else args.seed
    if extension == ".csv" and len(model.network_config.input_shape) != 1:
        raise TfvaeError(
            f"--out {args.out}: a .csv holds a table's rows, but the model in {args.run_dir} generates "
            f"examples of shape {model.network_config.input_shape}; write a .png grid or a .npy array."
        )
    # The samples, the decoder's activations for them and the likelihood's parameters.
    memory.require(
        3 * memory.FLOAT_BYTES * args.n * math.prod(model.network_config.input_shape),
        f"{args.n:,} samples",
        "ask for fewer with a smaller --n, in several calls",
    )
    if extension == ".png" and not plots.is_picture(model.image_shape):
        raise TfvaeError(
            f"the model in {args.run_dir} does not model grey or colour images (examples of shape "
            f"{model.network_config.input_shape}); write the samples as an array with --out FILE.npy "
            "(or a table's rows with --out FILE.csv)."
        )
    if model.conditional:
        if args.labels and len(args.labels) > args.n:
            raise TfvaeError(
                f"--labels names {len(args.labels)} classes, but --n {args.n} samples would leave out "
                f"{', '.join(map(str, args.labels[args.n :]))}; ask for --n {len(args.labels)} or more, or fewer "
                "labels."
            )
        classes = args.labels or tuple(range(model.num_classes))
        labels = np.resize(np.asarray(classes, np.int64), args.n)
        samples = model.sample(args.n, labels=labels, seed=seed, draw=args.draw).numpy()
    elif args.labels is not None:
        raise TfvaeError(f"the model in {args.run_dir} is not conditional; leave out --labels.")
    else:
        samples = model.sample(args.n, seed=seed, draw=args.draw).numpy()
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    if extension == ".npy":
        files.write_npy(args.out, samples)
    elif extension == ".csv":
        _write_table(args.out, args.run_dir, samples, labels if model.conditional else None)
    else:
        plots.save_image_grid(
            samples,
            model.image_shape,
            args.out,
            value_range=plots.value_range(model),
            title=f"{args.n} samples from the prior",
        )
    if extension == ".npy":
        what = f"{args.n} samples, a {samples.dtype} array of shape {list(samples.shape)}"
    elif extension == ".csv":
        what = f"{args.n} rows of {samples.shape[1]} columns"
    else:
        what = f"a grid of {args.n} samples ({'×'.join(map(str, model.image_shape))} images)"
    print(f"wrote {args.out}: {what}, drawn with --seed {seed}")
    return 0


def _parts(text):
    parts = tuple(part.strip() for part in text.split(","))
    unknown = [part for part in parts if part not in PARTS]
    if unknown or not parts:
        raise argparse.ArgumentTypeError(
            f"unknown part(s) {', '.join(unknown) or repr(text)}; choose from {','.join(PARTS)}"
        )
    return parts


def _add_export(subparsers):
    p = subparsers.add_parser(
        "export",
        help="export a trained run for TF Serving, ONNX Runtime and Triton",
        description="Write the decoder (NAME) and encoder (NAME_encoder) as SavedModel, ONNX, "
        "a Triton config.pbtxt and manifest.json into one model repository.",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run directory written by `tfvae train`")
    p.add_argument("--name", help="model name (default: the run directory's name)")
    p.add_argument("--out", default="exported", metavar="EXPORT_DIR", help="the model repository (default: exported)")
    p.add_argument("--version", type=version, default=None, help="version folder (default: the next free number)")
    p.add_argument(
        "--parts",
        type=_parts,
        default=None,
        metavar="decoder,encoder",
        help="default: both (the encoder of an IAF or a hierarchy takes N(0, I) noise beside x)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing version")
    p.set_defaults(handler=_export)


def _export(args):
    name = args.name or os.path.basename(os.path.normpath(args.run_dir))
    check_arguments(name, args.parts or PARTS, args.version, args.out)
    model = load_run(args.run_dir)
    result = export(model, args.out, name, version=args.version, parts=args.parts, overwrite=args.overwrite)
    for part, path in result.paths.items():
        difference = result.manifest["parts"][part]["onnx_max_abs_difference"]
        print(
            f"wrote {path} ({part}: SavedModel + ONNX opset {result.manifest['onnx_opset']}, "
            f"ONNX vs TF max |diff| {difference:.2g})"
        )
    return 0


def _write_table(path, run_dir, rows, labels=None):
    """Sampled rows as a CSV with the run's table's header (and a `label` column first for
    a conditional model), atomically."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    columns = table_columns(read_config(run_dir).data, rows.shape[1])
    writer.writerow(columns if labels is None else ["label", *columns])
    for index, row in enumerate(rows):
        cells = [f"{v:.7g}" for v in row]
        writer.writerow(cells if labels is None else [int(labels[index]), *cells])
    files.write_text(path, text.getvalue())


def _add_evaluate(subparsers):
    p = subparsers.add_parser(
        "evaluate",
        help="importance-sampled NLL, ELBO, KL and active units of a trained run",
        description="Estimate -log p(x) by importance sampling (q(z|x) as proposal) and report "
        "per-example averages. With --json the last line of stdout is one JSON object.",
    )
    _add_run_and_split(p)
    p.add_argument("--limit", type=positive_int, default=None, help="evaluate the first N examples")
    p.add_argument("--num-samples", type=positive_int, default=5000, help="importance samples K")
    p.add_argument("--batch-size", type=positive_int, default=100)
    p.add_argument(
        "--memory-budget-mib",
        type=positive_float,
        default=memory.IMPORTANCE_SAMPLING_BUDGET_MIB,
        help="roughly what one importance-sampling step may hold (default %(default)s)",
    )
    p.add_argument("--seed", type=non_negative_int, default=0)
    p.add_argument("--json", action="store_true", help="end stdout with one JSON line")
    p.add_argument(
        "--scores",
        metavar="FILE",
        default=None,
        help="also write each example's importance-sampled log p(x) in nats (a table row's anomaly "
        "score: low is unlikely), as a .csv with columns example,log_px or a .npy array",
    )
    p.set_defaults(handler=_evaluate)


def _add_run_and_split(parser):
    """RUN_DIR, --data and --split: the run and the examples `_split_for` gives it."""
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a run directory written by `tfvae train`")
    parser.add_argument(
        "--data",
        default=None,
        help="a bundled dataset name or an .npz path (default: the data the run was "
        "trained on, with its own held-out validation examples)",
    )
    parser.add_argument(
        "--split",
        choices=SPLITS,
        default=None,
        help="default: test, or valid for data without a test split (a table, a folder of images)",
    )


def _split_for(model, args):
    """`(split, examples, labels or None)`: `args.data`'s `args.split` (by default its test
    split, or its validation examples where it has none), checked against the model."""
    splits = load_run_data(args.run_dir, args.data, likelihood=model.likelihood_layer.family)
    if model.conditional:
        splits.require_labels()
    split = args.split or ("test" if splits.test is not None else "valid")
    examples, labels = splits.split(split)
    if split == "train" and splits.streamed:
        raise TfvaeError(
            f"{splits.name}: the train split is streamed from TFRecord shards, not held in "
            "memory; evaluate --split valid or test."
        )
    if examples is None:
        reason = f" ({splits.valid_source})" if split == "valid" else ""
        present = " or ".join(f"--split {name}" for name in SPLITS if getattr(splits, name) is not None)
        raise TfvaeError(f"{splits.name} has no {split!r} split{reason}; use {present}.")
    if tuple(examples.shape[1:]) != model.network_config.input_shape:
        raise TfvaeError(
            f"{splits.name}[{split!r}] examples have shape {examples.shape[1:]}, but the model in "
            f"{args.run_dir} takes {model.network_config.input_shape}."
        )
    levels = model.likelihood_layer.data_levels
    if levels and float(np.max(examples)) <= 1.0:
        # Values in [0, 1] pass as levels 0 and 1: scored as near-black images, silently.
        raise TfvaeError(
            f"{splits.name}[{split!r}] lies in [0, 1], but the model in {args.run_dir} reads {levels} levels "
            f"(0 .. {levels - 1}) and would score these as its darkest ones; give the examples as levels "
            f"(round(x * {levels - 1}))."
        )
    return split, examples, labels


def _limited(examples, labels, limit):
    return examples[:limit], None if labels is None else labels[:limit]


def _evaluate(args):
    scores_format = None if args.scores is None else os.path.splitext(args.scores)[1].lower()
    if scores_format not in (None, ".csv", ".npy"):
        raise TfvaeError(f"--scores must end in .csv or .npy; got {args.scores!r}.")
    if args.scores is not None:
        _check_writable(args.scores, "--scores")  # before a pass that may take an hour
    model = load_run(args.run_dir)
    split, examples, labels = _split_for(model, args)
    examples, labels = _limited(examples, labels, args.limit)
    # The batches done so far: a killed evaluation run again continues (the file is
    # removed once the report is out). Named by what the estimates depend on, so that
    # evaluations of one run with other settings at the same time keep files of their own;
    # not by the step sizes, so that a pass killed for memory continues with a smaller
    # --memory-budget-mib or --batch-size.
    settings = [args.data, split, args.limit, args.num_samples, args.seed]
    key = hashlib.sha256(json.dumps(settings).encode()).hexdigest()[:12]
    checkpoint = os.path.join(args.run_dir, f"evaluation-{split}-{key}.partial.npz")
    try:
        report, log_px = evaluate(
            model,
            examples,
            labels=labels if model.conditional else None,
            num_samples=args.num_samples,
            batch_size=args.batch_size,
            seed=args.seed,
            verbose=0 if args.json else 1,
            memory_budget_mib=args.memory_budget_mib,
            checkpoint=checkpoint,
            return_log_likelihoods=True,
        )
    except KeyboardInterrupt:
        print(
            "tfvae evaluate: interrupted; the finished batches are kept in "
            f"{checkpoint}: the same command continues from them",
            file=sys.stderr,
        )
        return INTERRUPTED
    stderr, examples = (
        ("", "1 example, so no standard error")
        if report["nll_stderr"] is None
        else (f" ± {report['nll_stderr']:.3f}", f"{report['examples']} examples")
    )
    print(
        f"{split}: nll {report['nll']:.3f}{stderr} nats "
        f"(K={report['num_samples']}, {examples}), elbo {report['elbo']:.3f}, "
        f"kl {report['kl']:.3f}, reconstruction {report['reconstruction']:.3f}, "
        f"active units {report['active_units']}/{model.latent_dim}"
    )
    if report["likelihood_of"] == "probability":
        print(f"bits/dim: nll {report['nll_bits_per_dim']:.4f}, elbo {report['elbo_bits_per_dim']:.4f}")
    elif report["likelihood_of"] == "density":
        print("(a Gaussian likelihood: these are densities of continuous data, not probabilities)")
    else:
        values = "grey levels" if model.likelihood_layer.data_levels else "values between 0 and 1"
        print(
            f"(a Bernoulli likelihood of {values}: "
            "these are cross-entropies, not probabilities of the data, so no bits/dim; a discretised logistic on "
            "8-bit levels gives them)"
        )
    if len(model.latent_sizes) > 1:
        print(
            "per layer (bottom first): "
            + ", ".join(
                f"z_{i + 1}: kl {kl:.3f}, active {active}/{size}"
                for i, (kl, active, size) in enumerate(
                    zip(report["kl_per_layer"], report["active_units_per_layer"], model.latent_sizes)
                )
            )
        )
    if args.scores is not None:
        _write_scores(args.scores, log_px)
    # After the scores: a failed write leaves the estimates to rerun from. An evaluation
    # with the same settings run at the same time shares the file and may have removed it.
    with contextlib.suppress(FileNotFoundError):
        os.remove(checkpoint)
    if args.json:
        print(json.dumps(report))
    return 0


def _check_writable(path, option):
    folder = os.path.dirname(os.path.abspath(path))
    try:
        files.check_writable(folder)
    except OSError as error:
        raise TfvaeError(
            f"{option} {path}: cannot write in {folder} ({error.strerror}); choose another path."
        ) from None


def _write_scores(path, log_px):
    """Each example's log p(x), `[N]`, to a .csv (example,log_px) or .npy file, atomically."""
    if path.lower().endswith(".npy"):
        files.write_npy(path, log_px)
    else:
        files.write_text(path, "example,log_px\n" + "".join(f"{i},{v:.6f}\n" for i, v in enumerate(log_px)))
    print(f"wrote {path}: log p(x) of {len(log_px)} examples (nats)")


def _add_report(subparsers):
    p = subparsers.add_parser(
        "report",
        help="write the pictures of a trained run",
        description="samples.png, reconstructions.png, learning_curve.png, latent_map.png and "
        "interpolation.png for the run in RUN_DIR, from --data's --split.",
    )
    _add_run_and_split(p)
    p.add_argument("--out", required=True, metavar="DIR", help="where the PNG files go")
    p.add_argument("--seed", type=non_negative_int, default=0)
    p.set_defaults(handler=_report)


def _report(args):
    from tfvae import plots

    model = load_run(args.run_dir)
    _, examples, labels = _split_for(model, args)
    model_labels = labels if model.conditional else None
    with open(os.path.join(args.run_dir, HISTORY_FILE), encoding="utf-8") as f:
        history = json.load(f)
    written = plots.save_run_pictures(model, examples, history, args.out, seed=args.seed, labels=model_labels)
    written.append(plots.save_latent_map(model, examples, os.path.join(args.out, "latent_map.png"), labels=labels))
    if plots.is_picture(model.image_shape):
        written.append(
            plots.save_interpolation(
                model, examples[0], examples[1], os.path.join(args.out, "interpolation.png"), labels=model_labels
            )
        )
    print("wrote " + ", ".join(written))
    return 0

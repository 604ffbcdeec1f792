"""`make bench-nll`: the standard VAE of the literature on statically binarised MNIST.

One Gaussian stochastic layer (40 dimensions), MLP encoder and decoder of two gated dense
layers of 300 (`--arch mlp --activation relu` for plain ReLU layers), standard normal
prior (`--prior vamp` for the VampPrior), Bernoulli likelihood, KL warm-up over 100
epochs, Adam 5e-4, batch 100, early stopping on the validation split (patience 50), as in
Tomczak & Welling (2018), whose baseline reports 88.56 nats and VampPrior 85.57. The test NLL
is importance-sampled with 5000 samples per image. Training checkpoints every epoch and
the test pass every batch of images: rerun with --resume (or --evaluate-only) after an
interruption. Writes bench/results/<name>.json.
"""

import argparse
import json
import os
import resource
import time

import keras
import numpy as np
from results_io import provenance, write_result

import tfvae
import tfvae.input_pipeline
from tfvae import files, training
from tfvae.callbacks import AveragedWeights
from tfvae.checkpointing import BestWeights, read_estimate_checkpoint
from tfvae.models.hierarchical import TOP_DOWN
from tfvae.training import TrainConfig, train

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "..", "shared", "data", "binarized_mnist.npz")


def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def saved_run(run_dir):
    """`(model, history, finished)` of a run already trained: the finished run's
    model.keras and history.json, or an unfinished run's best weights so far."""
    if os.path.exists(os.path.join(run_dir, training.MODEL_FILE)):
        with open(os.path.join(run_dir, training.HISTORY_FILE)) as f:
            return training.load_run(run_dir), json.load(f), True
    return (*best_so_far(run_dir), False)


def fine_tune(source_dir, config, learning_rate, epochs, patience):
    """A second stage: a finished run's best model trained on at a lower learning rate.

    Continues from `source_dir`'s model.keras (weights, optimizer and sampler state) with
    early stopping on the validation split; the epoch count continues from the first
    stage, so the KL warm-up stays finished. The second stage trains and validates on
    `config.objective` with `config.num_samples` (an ELBO-trained first stage can be
    finished on the IWAE bound, a 5-sample one on a 20-sample bound). Its epochs are
    judged against the first stage's best model scored on that same bound before any
    update, never against the first stage's own validation losses (a tighter bound
    would win on its own); the starting model stays the result unless an epoch beats it.
    Writes model.keras and history.json (both stages) to `config.out`.
    """
    with open(os.path.join(source_dir, training.HISTORY_FILE)) as f:
        first = json.load(f)
    model = training.load_run(source_dir)
    model.optimizer.learning_rate.assign(learning_rate)
    model.objective, model.num_samples = config.objective, config.num_samples
    if model.optimizer.use_ema:
        # The saved average is that of the first stage's last epoch, past its best one;
        # left in place it would still weigh 0.999^500 = 0.61 after a 500-step epoch.
        for average, variable in zip(
            model.optimizer._model_variables_moving_average, model.optimizer._trainable_variables
        ):
            average.assign(variable)
    splits = training.load_splits(config)
    batches, shuffle = tfvae.input_pipeline.shuffled_batches(splits.train, config.batch_size, config.seed)
    os.makedirs(config.out, exist_ok=True)
    start_loss = model.evaluate(splits.valid, batch_size=config.batch_size, verbose=0, return_dict=True)["loss"]
    print(f"{source_dir}'s best model on the second stage's bound: valid loss {start_loss:.4f}")
    best = BestWeights(os.path.join(config.out, training.BEST_WEIGHTS), start_loss)
    best.save(model)
    started = time.perf_counter()
    second = model.fit(
        batches,
        initial_epoch=first["epochs"],
        epochs=first["epochs"] + epochs,
        verbose=2,
        shuffle=False,
        validation_data=(splits.valid,),
        validation_batch_size=config.batch_size,
        # tfvae's own best-weights file: it keeps the weights' average where the first
        # stage's optimizer keeps one, which is also what AveragedWeights validates.
        callbacks=[shuffle, AveragedWeights(), best, keras.callbacks.EarlyStopping(patience=patience)],
    ).history
    model.load_weights(best.path)
    improved = min(second["val_loss"]) < start_loss
    history = {
        "epochs": first["epochs"] + len(second["loss"]),
        "first_stage": first,
        "second_stage": {
            "learning_rate": learning_rate,
            "objective": config.objective,
            "num_samples": config.num_samples,
            "start_val_loss": start_loss,
            **second,
        },
        "best_epoch": first["epochs"] + int(np.argmin(second["val_loss"])) + 1 if improved else first.get("best_epoch"),
        # The second stage's bound: the start model's score, then each epoch's.
        "valid": {"loss": [start_loss, *second["val_loss"]]},
        "train_seconds": None
        if first.get("train_seconds") is None
        else first["train_seconds"] + time.perf_counter() - started,
    }
    files.write_json(os.path.join(config.out, training.HISTORY_FILE), history)
    with files.atomic_path(os.path.join(config.out, training.MODEL_FILE)) as temporary:
        model.save(temporary)
    return model, history


def best_so_far(run_dir):
    """The best-validation weights and the epoch log of a stopped, unfinished run."""
    config = training.resume_config(run_dir)
    model = training.build_model_for(config, training.load_splits(config))
    model.load_weights(os.path.join(run_dir, training.BEST_WEIGHTS))
    history = training.epoch_history(run_dir)
    return model, history


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", default="vae_standard_normal")
    parser.add_argument("--data", default=DATA)
    parser.add_argument("--run-dir", default=None, help="default: runs/bench-NAME")
    parser.add_argument("--epochs", type=int, default=2000)
    parser.add_argument("--patience", type=int, default=50)
    parser.add_argument("--latent-dim", type=int, default=40)
    parser.add_argument(
        "--latent-dims", default=None, help="a hierarchical VAE's layer sizes, bottom first (e.g. 40,40)"
    )
    parser.add_argument(
        "--conditional-layers",
        type=int,
        default=0,
        help="a hierarchy's hidden layers inside each p(z_l | z_l+1) and q(z_l | z_l+1, x)",
    )
    parser.add_argument(
        "--top-down",
        choices=TOP_DOWN,
        default="shared",
        help="a hierarchy's q(z_l | z_l+1, x): the ladder's shared top-down state, or a network of its own",
    )
    parser.add_argument("--arch", choices=("mlp", "gated", "conv"), default="gated")
    parser.add_argument("--filters", default="32,64", help="--arch conv: channels of the stride-2 convolutions")
    parser.add_argument("--residual-blocks", type=int, default=0, help="--arch conv: blocks at each resolution")
    parser.add_argument("--dropout", type=float, default=0.0, help="--arch mlp/gated: after each hidden layer")
    parser.add_argument(
        "--decoder-dropout", type=float, default=None, help="the decoder's own rate (default: --dropout's)"
    )
    parser.add_argument("--activation", default="linear", help="of the hidden layers ('linear' gates a linear map)")
    parser.add_argument(
        "--posterior",
        default="diagonal",
        help="diagonal, full or iaf; a hierarchy's may be one per layer (iaf,diagonal)",
    )
    parser.add_argument("--flow-steps", type=int, default=2, help="IAF steps (with --posterior iaf)")
    parser.add_argument("--prior", choices=("standard_normal", "vamp"), default="standard_normal")
    parser.add_argument("--pseudo-inputs", type=int, default=500, help="VampPrior components")
    parser.add_argument("--hidden-units", default="300,300")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--learning-rate", type=float, default=5e-4)
    parser.add_argument(
        "--lr-schedule",
        choices=training.LEARNING_RATE_SCHEDULES,
        default="constant",
        help="cosine: decay the rate to nearly 0 at --epochs (then set --epochs to the run's length)",
    )
    parser.add_argument("--kl-warmup-epochs", type=int, default=100)
    parser.add_argument(
        "--ema-momentum", type=float, default=0.0, help="validate and keep a moving average of the weights (0: off)"
    )
    parser.add_argument("--weight-decay", type=float, default=0.0, help="decoupled (AdamW) weight decay (0: off)")
    parser.add_argument("--objective", choices=("elbo", "iwae"), default="elbo")
    parser.add_argument("--num-samples", type=int, default=1, help="samples of z per input in training")
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="the training's seed (weights, shuffles, samples of z); the test pass keeps seed 0",
    )
    parser.add_argument("--eval-samples", type=int, default=5000)
    parser.add_argument("--test-limit", type=int, default=None, help="evaluate the first N test images")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --run-dir from its last checkpoint, or start it when there is none yet, so "
        "that one nohup command serves the first session and every later one",
    )
    parser.add_argument(
        "--evaluate-only",
        action="store_true",
        help="evaluate a trained run: a finished one's model.keras, or the best weights so "
        "far of a stopped, unfinished one (reported as unfinished)",
    )
    parser.add_argument(
        "--fine-tune-from",
        metavar="RUN_DIR",
        default=None,
        help="a second stage: continue this finished run's best model at --learning-rate "
        "for up to --epochs more epochs with --patience",
    )
    parser.add_argument("--out", default=None, help="default: bench/results/NAME.json")
    args = parser.parse_args()
    config = TrainConfig(
        data=args.data,
        out=args.run_dir or os.path.join("runs", f"bench-{args.name}"),
        epochs=args.epochs,
        latent_dim=args.latent_dim,
        arch=args.arch,
        filters=tuple(int(f) for f in args.filters.split(",")),
        residual_blocks=args.residual_blocks,
        dropout=args.dropout,
        decoder_dropout=args.decoder_dropout,
        model="hierarchical" if args.latent_dims else "vae",
        latent_dims=tuple(int(d) for d in args.latent_dims.split(",")) if args.latent_dims else (),
        conditional_layers=args.conditional_layers,
        top_down=args.top_down,
        activation=args.activation,
        posterior=args.posterior,
        flow_steps=args.flow_steps,
        prior=args.prior,
        pseudo_inputs=args.pseudo_inputs,
        hidden_units=tuple(int(u) for u in args.hidden_units.split(",")),
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        lr_schedule=args.lr_schedule,
        kl_warmup_epochs=args.kl_warmup_epochs,
        ema_momentum=args.ema_momentum,
        weight_decay=args.weight_decay,
        objective=args.objective,
        num_samples=args.num_samples,
        patience=args.patience,
        seed=args.seed,
    )
    finished = True
    if args.evaluate_only:
        model, history, finished = saved_run(config.out)
    elif args.fine_tune_from:
        model, history = fine_tune(args.fine_tune_from, config, args.learning_rate, args.epochs, args.patience)
    else:
        resume = args.resume and os.path.exists(os.path.join(config.out, training.CONFIG_FILE))
        result = train(config, overwrite=not resume, resume=resume, verbose=2, pictures=True)
        model, history = result.model, result.history
    if not history.get("valid", {}).get("loss"):
        # Checked before the hour-long pass, not after it.
        raise SystemExit(f"{config.out}: no finished epoch to report (no checkpoint with an epoch log)")
    trained = time.perf_counter()
    # The training the run's history records, over every resumed part (None for epochs
    # logged before epochs had times).
    train_seconds = history.get("train_seconds")
    rss_after_training = peak_rss_mib()
    test = tfvae.load_dataset(args.data).test[: args.test_limit]
    # The K = 5000 pass takes an hour here: its finished batches are kept, so a rerun of
    # the same command after a kill continues it (the file goes when the JSON is written).
    partial = os.path.join(config.out, "test_nll.partial.npz")
    before = read_estimate_checkpoint(partial)
    report = tfvae.evaluate(model, test, num_samples=args.eval_samples, seed=0, verbose=1, checkpoint=partial)
    ended = time.perf_counter()
    after = read_estimate_checkpoint(partial)
    # The importance-sampled batches that killed processes finished count too; a file
    # whose fingerprint changed was started afresh, so its earlier time is not this pass's.
    earlier_seconds = before["seconds"] if before and after and before["fingerprint"] == after["fingerprint"] else 0.0
    eval_seconds = ended - trained + earlier_seconds
    output = {
        "name": args.name,
        "test_nll": report["nll"],
        "test_nll_stderr": report["nll_stderr"],
        "num_samples": report["num_samples"],
        "test_examples": report["examples"],
        "test_elbo": report["elbo"],
        "test_kl": report["kl"],
        "active_units": report["active_units"],
        "epochs": history["epochs"],
        "training_finished": finished,
        "best_epoch": history.get("best_epoch"),
        "best_valid_loss": min(history["valid"]["loss"]),
        "wall_seconds": None if train_seconds is None else round(train_seconds + eval_seconds, 1),
        "train_seconds": None if train_seconds is None else round(train_seconds, 1),
        "eval_seconds": round(eval_seconds, 1),
        "peak_rss_mib_after_training": round(rss_after_training, 1),
        "peak_rss_mib_after_eval": round(peak_rss_mib(), 1),
        "config": config.to_dict(),
        "command": "python bench/nll_bench.py "
        + " ".join(
            f"--{k.replace('_', '-')}" + ("" if v is True else f" {v}")
            for k, v in vars(args).items()
            if v not in (None, False) and k not in ("out",)
        ),
        **provenance(),
        "versions": {"tfvae": tfvae.__version__},
    }
    out = args.out or os.path.join(HERE, "results", f"{args.name}.json")
    write_result(out, output)
    os.remove(partial)
    print(json.dumps({k: output[k] for k in ("test_nll", "test_nll_stderr", "epochs", "wall_seconds")}))


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM through tfvae.stopping.StopOnSignal
        raise SystemExit(
            "nll_bench: stopped; the training keeps its last finished epoch and the test pass its finished "
            "batches: rerun the same command with --resume (with --evaluate-only once the training has finished)"
        ) from None

"""The simulator's command-line options, shared by `python -m bench.provider` and the
benchmark harness (`python -m bench.provider_run`)."""

from __future__ import annotations

import argparse

from jobqueue import ConfigError

from ._config import DEFAULT_LIMITS, Limits, ProviderConfig

__all__ = ["config_from_args", "parser"]


def _outage(text: str) -> tuple[float, float]:
    try:
        start, duration = (float(p) for p in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected START,DURATION seconds, got {text!r}") from None
    return start, duration


def _model_limits(text: str) -> tuple[str, Limits]:
    model, sep, limits = text.partition("=")
    if not sep or not model:
        raise argparse.ArgumentTypeError(f"expected MODEL=RPM,ITPM,OTPM, got {text!r}")
    try:
        return model, Limits.parse(limits)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def parser() -> argparse.ArgumentParser:
    """The command line (shared with the benchmark harness)."""
    d = ProviderConfig()
    p = argparse.ArgumentParser(
        prog="python -m bench.provider",
        description="A local Anthropic Messages API with per-key RPM/ITPM/OTPM limits in "
        "scaled time, a latency spread and outages.",
    )
    p.add_argument("--host", default=d.host)
    p.add_argument("--port", type=int, default=d.port, help="0 picks a free port (default)")
    p.add_argument(
        "--minute-seconds",
        type=float,
        default=d.minute_seconds,
        help="seconds of a rate-limit minute (default %(default)s; e.g. 10)",
    )
    p.add_argument("--rpm", type=int, default=DEFAULT_LIMITS.rpm, help="requests per minute")
    p.add_argument("--itpm", type=int, default=DEFAULT_LIMITS.itpm, help="input tokens/minute")
    p.add_argument("--otpm", type=int, default=DEFAULT_LIMITS.otpm, help="output tokens/minute")
    p.add_argument(
        "--model-limits",
        type=_model_limits,
        action="append",
        default=[],
        metavar="MODEL=RPM,ITPM,OTPM",
        help="limits of one model (repeatable); other models get --rpm/--itpm/--otpm",
    )
    p.add_argument("--latency-median", type=float, default=d.latency_median)
    p.add_argument("--latency-sigma", type=float, default=d.latency_sigma)
    p.add_argument("--latency-min", type=float, default=d.latency_min)
    p.add_argument("--latency-max", type=float, default=d.latency_max)
    p.add_argument("--output-median", type=int, default=d.output_median, help="output tokens")
    p.add_argument("--output-sigma", type=float, default=d.output_sigma)
    p.add_argument(
        "--outage",
        type=_outage,
        default=None,
        metavar="START,DURATION",
        help="answer 529 from START for DURATION seconds (simulator time)",
    )
    p.add_argument("--outage-drop-share", type=float, default=d.outage_drop_share)
    p.add_argument("--outage-retry-after", type=float, default=d.outage_retry_after)
    p.add_argument(
        "--false-share",
        type=float,
        default=d.false_share,
        help="share of booleans answered false in structured output (judge rejections)",
    )
    p.add_argument("--seed", type=int, default=d.seed)
    return p


def config_from_args(args: argparse.Namespace) -> ProviderConfig:
    """The `ProviderConfig` the parsed options describe.

    Args:
        args: What `parser().parse_args()` returned.

    Returns:
        The configuration.

    Raises:
        ConfigError: A value is out of range.
    """
    return ProviderConfig(
        host=args.host,
        port=args.port,
        minute_seconds=args.minute_seconds,
        limits=Limits(rpm=args.rpm, itpm=args.itpm, otpm=args.otpm),
        model_limits=dict(args.model_limits),
        latency_median=args.latency_median,
        latency_sigma=args.latency_sigma,
        latency_min=args.latency_min,
        latency_max=args.latency_max,
        output_median=args.output_median,
        output_sigma=args.output_sigma,
        outage=args.outage,
        outage_drop_share=args.outage_drop_share,
        outage_retry_after=args.outage_retry_after,
        false_share=args.false_share,
        seed=args.seed,
    )

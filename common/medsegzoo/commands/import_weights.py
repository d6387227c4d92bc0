"""``medsegzoo import-weights``: turn the authors' published checkpoints into a bundle's inference weights.

Examples::

    medsegzoo import-weights bundles/stunet_cross_dataset_evaluation large_ep4k.model \\
        --override stunet_size=L --override label_system=totalsegmentator_stunet
    medsegzoo import-weights bundles/clip_universal_segmentation clip_driven_universal_swin_unetr.pth \\
        --text-embeddings txt_encoding.pth
    medsegzoo import-weights bundles/clip_universal_segmentation clip_driven_universal_unet.pth \\
        --text-embeddings txt_encoding.pth --override backbone=unet
    medsegzoo import-weights bundles/tct_partial_label_segmentation models/checkpoint_final.pt

The checkpoint is read as data only (no pickled code runs), renamed to the bundle's network where
the authors' names differ (docs/published_weights.md lists every rule), and checked strictly
against the network that configs/inference.json builds (with the overrides): a missing,
unexpected or differently shaped tensor stops the import with the full list, and nothing is
written. On success the weights are written atomically to --out (default BUNDLE/models/model.pt)
and the source file's sha256 is recorded in configs/metadata.json under "imported_weights". Run
inference with the same overrides. Formats and the published files: docs/published_weights.md.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from medsegzoo.bundle_runs import BundleRun, parse_bundle
from medsegzoo.errors import DataValidationError, MedSegZooError
from medsegzoo.networks.published import (
    FAMILY_TITLES,
    convert_published,
    network_family,
    read_text_embedding_file,
)
from medsegzoo.networks.stunet import STUNET_SIZES
from medsegzoo.networks.text_encoders import (
    TextEmbeddings,
    load_text_embeddings,
    save_text_embeddings,
)
from medsegzoo.networks.weights import compare_state_dicts, mismatch_error, read_checkpoint
from medsegzoo.utils.atomic import atomic_path, check_output_path
from medsegzoo.zoo.pack import file_digest

HELP = "turn the authors' published checkpoints into a bundle's inference weights (models/model.pt), strictly"

# shown in full up to this many, then counted
_LISTED = 40


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``import-weights`` arguments to a (sub-)parser."""
    parser.description = __doc__.split("\n\n")[0]
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = __doc__.split("\n\n", 1)[1]
    parser.add_argument("bundle", metavar="BUNDLE_DIR", help="the bundle folder (configs/inference.json inside)")
    parser.add_argument("checkpoint", metavar="CHECKPOINT", help="the published checkpoint (.model, .pth, .pt)")
    parser.add_argument("--out", "-o", help="weights file to write (default: BUNDLE_DIR/models/model.pt)")
    parser.add_argument(
        "--text-embeddings",
        metavar="FILE",
        help="universal model: the class text embeddings (official txt_encoding.pth, or a medsegzoo embedding "
        "file), written as the bundle's models/text_embeddings.pt",
    )
    parser.add_argument(
        "--override",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="inference.json override (JSON value), e.g. stunet_size=L; use the same ones for inference",
    )


@dataclasses.dataclass
class ImportResult:
    """What an import did (printed by the command, checked by the tests).

    Attributes:
        out: the weights file written.
        network: the network's class name.
        source_format: the checkpoint layout recognised.
        tensors: tensors written.
        parameters: parameter count (buffers not included).
        buffers: buffer tensors written (text embeddings, Swin position indices, ...).
        renamed: ``(published name, our name)`` pairs.
        rules: rename rule -> number of keys.
        dropped: ``(published name, reason)`` pairs.
        cast: ``"float16 -> float32"`` -> number of tensors converted to the network's dtype.
        sha256: the checkpoint's sha256.
        text_embeddings: the bundle's embedding file, when it was written.
        metadata: the metadata file updated, or None when the output lies outside the bundle.
        overrides: the config overrides used (inference needs the same).
    """

    out: Path
    network: str
    source_format: str
    tensors: int
    parameters: int
    buffers: int
    renamed: list[tuple[str, str]]
    rules: dict[str, int]
    dropped: list[tuple[str, str]]
    cast: dict[str, int]
    sha256: str
    text_embeddings: Path | None
    text_embeddings_note: str
    metadata: Path | None
    overrides: dict[str, Any]

    def summary(self) -> str:
        """The printout: what was loaded, renamed, dropped and written."""
        lines = [
            f"checkpoint format: {self.source_format}",
            f"loaded into {self.network}: {self.tensors} tensors, {self.parameters:,} parameters"
            + (f" (+ {self.buffers} buffers)" if self.buffers else ""),
        ]
        if self.rules:
            lines.append(f"renamed {len(self.renamed)} keys:")
            lines += [f"    {rule}: {count}" for rule, count in self.rules.items()]
        else:
            lines.append("renamed: none (the checkpoint uses the network's names)")
        if self.dropped:
            lines.append(f"dropped {len(self.dropped)} keys:")
            for reason in dict.fromkeys(r for _, r in self.dropped):
                keys = [k for k, r in self.dropped if r == reason]
                shown = ", ".join(keys[:_LISTED]) + (f", ... {len(keys) - _LISTED} more" if len(keys) > _LISTED else "")
                lines.append(f"    {reason} ({len(keys)}): {shown}")
        else:
            lines.append("dropped: none")
        for change, count in self.cast.items():
            lines.append(f"converted {count} tensors {change} (the network's dtype)")
        lines.append(f"written: {self.out}")
        if self.text_embeddings_note:
            lines.append(f"text embeddings: {self.text_embeddings_note}")
        if self.metadata is not None:
            lines.append(f"recorded in {self.metadata}: imported_weights (sha256 {self.sha256})")
        else:
            lines.append(f"sha256 {self.sha256}; {self.out} is outside the bundle, so its metadata is unchanged")
        if self.overrides:
            flags = " ".join(f"--{k} {_shell_value(v)}" for k, v in self.overrides.items())
            lines.append(f"run inference with the same overrides: {flags}")
        return "\n".join(lines)


def _shell_value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def parse_override(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` with a JSON value (a plain string when it is not JSON).

    Raises:
        DataValidationError: no ``=``.
    """

    key, sep, value = text.partition("=")
    if not sep or not key:
        raise DataValidationError(f"--override {text!r}: expected KEY=VALUE")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def _build_network(parser: Any, where: str) -> Any:
    """The config's ``network_def``, on the meta device when it can be built there (no memory).

    MONAI's Swin UNETR reads a value while it is built, which the meta device cannot give; such
    a network is built on the CPU.
    """
    import torch


    # any failure on meta: build it for real below, which reports a genuine error
    with contextlib.suppress(Exception), torch.device("meta"):
        return parser.get_parsed_content("network_def", lazy=False)
    try:
        return parser.get_parsed_content("network_def", lazy=False)
    except MedSegZooError:
        raise
    except Exception as err:
        raise MedSegZooError(f"{where}: network_def cannot be built ({type(err).__name__}: {err})") from err


def _stunet_hint(state: Mapping[str, Any], parser: Any) -> str:
    """The overrides that would make the bundle's STU-Net fit a checkpoint, when they can be read off it."""

    first, head = state.get("conv_blocks_context.0.0.conv1.weight"), state.get("seg_outputs.0.weight")
    if first is None or head is None:
        return ""
    size = next((name for name, spec in STUNET_SIZES.items() if spec.channels[0] == first.shape[0]), None)
    outputs = int(head.shape[0])
    wanted = []
    if size is not None and size != parser.get_parsed_content("stunet_size"):
        wanted.append(f"--override stunet_size={size}")
    if outputs != int(parser.get_parsed_content("num_classes")) + 1:
        wanted.append(
            "--override label_system=totalsegmentator_stunet" if outputs == 105
            else f"--override label_system=<a label system of {outputs - 1} classes>"
        )
    described = f"STU-Net {size or '(unknown width)'} with {outputs} outputs"
    if outputs == 105:
        described += " (TotalSegmentator, 104 classes in STU-Net's alphabetical order + background)"
    return f"The checkpoint is {described}." + (f" Import it with {' '.join(wanted)}." if wanted else "")


@dataclasses.dataclass
class _Embeddings:
    """The universal model's class embeddings to use, and whether the bundle's file must be written."""

    classes: tuple[str, ...]
    vectors: Any
    encoder: str
    prompt: str
    path: Path  # the bundle's embedding file (text_embedding_file)
    source: Path | None  # the --text-embeddings file, when given
    write: bool
    note: str

    def save(self, path: Path) -> None:
        """Write them in this package's embedding file format."""

        save_text_embeddings(TextEmbeddings(self.classes, self.vectors, self.encoder, self.prompt), path)


def _universal_embeddings(parser: Any, state: Mapping[str, Any], checkpoint: Path, text_file: str | None) -> _Embeddings:
    """Decide the class embeddings of an imported universal model (see docs/published_weights.md).

    The network keeps its embeddings as a buffer, so the weights file carries the ones the model
    was trained with (the official ``organ_embedding``). The bundle's embedding file must hold the
    same vectors: an --text-embeddings file that differs from the checkpoint's is refused.
    """
    import torch


    classes = tuple(parser.get_parsed_content("class_names"))
    width = parser.get_parsed_content("text_embedding_width")
    bundle_file = Path(parser.get_parsed_content("text_embedding_file"))
    key = next((k for k in ("organ_embedding", "groups.0.embeddings") if k in state), None)
    carried = state[key].float() if key is not None else None
    if carried is not None and tuple(carried.shape) != (len(classes), width):
        raise DataValidationError(
            f"{checkpoint}: {key} has shape {tuple(carried.shape)}; the bundle expects {len(classes)} classes x width "
            f"{width} (label_system {parser.get_parsed_content('label_system')}, text_embedding_width)"
        )
    if text_file is not None:
        vectors, encoder, prompt = read_text_embedding_file(text_file, classes, width)
        if carried is not None and not torch.allclose(vectors, carried, rtol=1e-3, atol=1e-3):
            worst = float((vectors - carried).abs().max())
            raise DataValidationError(
                f"{text_file}: its embeddings differ from the checkpoint's {key} ({checkpoint}; largest difference "
                f"{worst:.4g}): the model was trained with other embeddings. Leave --text-embeddings out to use the "
                "checkpoint's own."
            )
        source, note = Path(text_file), f"from {text_file}"
    elif carried is not None:
        vectors, encoder, prompt = carried, f"checkpoint:{checkpoint.name}#{key}", ""
        source, note = None, f"from the checkpoint's {key}"
    elif bundle_file.is_file():
        cached = load_text_embeddings(bundle_file, classes=classes, width=width)
        return _Embeddings(classes, cached.embeddings, cached.encoder, cached.prompt, bundle_file, None, False, f"{bundle_file} kept")
    else:
        raise DataValidationError(
            f"{checkpoint}: holds no class embeddings and {bundle_file} does not exist; pass the embedding file "
            "with --text-embeddings (the official txt_encoding.pth)"
        )
    if bundle_file.is_file():
        try:
            existing = load_text_embeddings(bundle_file, classes=classes, width=width)
            if torch.equal(existing.embeddings, vectors):
                return _Embeddings(classes, vectors, encoder, prompt, bundle_file, source, False, f"{bundle_file} already holds them")
            note += f"; replaces {bundle_file} (it held other embeddings, encoder {existing.encoder})"
        except DataValidationError:
            note += f"; replaces {bundle_file} (not a matching embedding file)"
    return _Embeddings(classes, vectors, encoder, prompt, bundle_file, source, True, f"{bundle_file} written, {note}")


def _format_of(content: Any, family: str) -> str:

    where = {
        "state_dict": "weights under 'state_dict' (nnU-Net v1 .model layout)",
        "net": "release file, weights under 'net'",
        "network": "medsegzoo training checkpoint, weights under 'network'",
        "model": "weights under 'model'",
        "network_weights": "weights under 'network_weights'",
    }.get(content.wrapper_key or "", "plain state dict")
    prefix = ", 'module.' prefix removed" if content.removed_prefix else ""
    return f"{FAMILY_TITLES[family]}: {where}{prefix}"


def import_weights(
    bundle: str | os.PathLike,
    checkpoint: str | os.PathLike,
    out: str | os.PathLike | None = None,
    text_embeddings: str | os.PathLike | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> ImportResult:
    """Import a published checkpoint as the bundle's inference weights.

    Args:
        bundle: the bundle folder.
        checkpoint: the published (or this package's) checkpoint.
        out: weights file to write (default ``bundle/models/model.pt``).
        text_embeddings: universal model only: the class embedding file (official or ours).
        overrides: inference.json overrides the network is built with.

    Returns:
        What was imported.

    Raises:
        StateDictMismatchError: the checkpoint is unreadable, not a checkpoint, or does not fit the
            bundle's network (every mismatched key listed).
        DataValidationError: an embedding file of another class count or width.
        MedSegZooError: not a bundle folder, an option that does not apply to the bundle.
        OutputError: an output that cannot be written (found before any work).
    """
    import torch


    bundle, checkpoint = Path(bundle), Path(checkpoint)
    meta_file = bundle / "configs" / "metadata.json"
    if not (bundle / "configs" / "inference.json").is_file() or not meta_file.is_file():
        raise MedSegZooError(f"{bundle}: not a bundle folder (needs configs/inference.json and configs/metadata.json)")
    out = Path(out) if out is not None else bundle / "models" / "model.pt"
    check_output_path(out)
    metadata = _read_metadata(meta_file) if out.resolve().is_relative_to(bundle.resolve()) else None
    content = read_checkpoint(checkpoint)  # a wrong file fails here, before the bundle is parsed
    overrides = dict(overrides or {})
    network, parser, embeddings = _bundle_network(bundle, overrides, content.state, checkpoint, text_embeddings)

    family = network_family(network)
    own = network.state_dict()
    try:
        conversion = convert_published(family, content.state, own, _format_of(content, family), network=network)
    except MedSegZooError as err:  # the conversion knows the keys, not the file: name it
        raise MedSegZooError(f"{checkpoint}: {err}") from err
    report = compare_state_dicts(own, conversion.state)
    if report["missing"] or report["unexpected"] or report["skipped_shape"]:
        hint = conversion.hint or (_stunet_hint(content.state, parser) if family == "stunet" else "")
        raise mismatch_error(str(checkpoint), type(network).__name__, report, len(own), hint)
    weights, cast = _in_network_dtypes(conversion.state, own)

    digest = file_digest(checkpoint, "sha256")
    embeddings_out = embeddings if embeddings is not None and embeddings.write else None
    if metadata is not None:
        metadata["imported_weights"] = _metadata_entry(bundle, checkpoint, digest, conversion.source_format, out,
                                                       overrides, embeddings_out)
    # every output is staged beside its target and renamed only when all of them are complete
    with contextlib.ExitStack() as stack:
        torch.save(weights, stack.enter_context(atomic_path(out)))
        if embeddings_out is not None:
            embeddings_out.save(stack.enter_context(atomic_path(embeddings_out.path)))
        if metadata is not None:
            stack.enter_context(atomic_path(meta_file)).write_text(json.dumps(metadata, indent=4) + "\n", encoding="utf-8")

    parameter_names = {name for name, _ in network.named_parameters()}
    return ImportResult(
        out=out,
        network=type(network).__name__,
        source_format=conversion.source_format,
        tensors=len(weights),
        parameters=sum(t.numel() for n, t in weights.items() if n in parameter_names),
        buffers=sum(1 for n in weights if n not in parameter_names),
        renamed=conversion.renamed,
        rules=conversion.rules,
        dropped=conversion.dropped,
        cast=cast,
        sha256=digest,
        text_embeddings=embeddings_out.path if embeddings_out is not None else None,
        text_embeddings_note=embeddings.note if embeddings is not None else "",
        metadata=meta_file if metadata is not None else None,
        overrides=overrides,
    )


def _bundle_network(
    bundle: Path, overrides: dict[str, Any], state: Mapping[str, Any], checkpoint: Path, text_file: str | os.PathLike | None
) -> tuple[Any, Any, _Embeddings | None]:
    """The network inference.json builds with the overrides, its parsed config, and (universal
    model) the class embeddings decided for it."""

    run = BundleRun(bundle, ["inference.json"], overrides)
    parser = parse_bundle(run)
    where = str(bundle / "configs" / "inference.json")
    if parser.get("text_embedding_file") is None:  # not the universal model
        if text_file is not None:
            raise MedSegZooError(f"--text-embeddings: {bundle} is not the universal model bundle (no text_embedding_file)")
        return _build_network(parser, where), parser, None
    embeddings = _universal_embeddings(parser, state, checkpoint, None if text_file is None else str(text_file))
    with tempfile.TemporaryDirectory(prefix="medsegzoo-import-") as scratch:
        # the network is built from a private copy: the bundle's file is only written at the end
        staged = Path(scratch) / "text_embeddings.pt"
        embeddings.save(staged)
        parser = parse_bundle(run.with_overrides(text_embedding_file=str(staged)))
        return _build_network(parser, where), parser, embeddings


def _in_network_dtypes(state: Mapping[str, Any], own: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, int]]:
    """The tensors in the network's order and dtypes, on the CPU, and how many changed dtype."""
    weights, cast = {}, {}
    for name, reference in own.items():
        tensor = state[name].detach()
        if tensor.dtype != reference.dtype:
            change = f"{str(tensor.dtype).removeprefix('torch.')} -> {str(reference.dtype).removeprefix('torch.')}"
            cast[change] = cast.get(change, 0) + 1
        weights[name] = tensor.to(device="cpu", dtype=reference.dtype).contiguous()
    return weights, cast


def _metadata_entry(
    bundle: Path, checkpoint: Path, digest: str, source_format: str, out: Path, overrides: Mapping[str, Any],
    embeddings: _Embeddings | None,
) -> dict[str, Any]:
    """The ``imported_weights`` entry of the bundle's metadata."""

    entry: dict[str, Any] = {
        "source": checkpoint.name,
        "sha256": digest,
        "format": source_format,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "weights_file": _relative(out, bundle),
    }
    if overrides:
        entry["overrides"] = dict(overrides)
    if embeddings is not None:
        entry["text_embeddings"] = {
            "source": embeddings.source.name if embeddings.source else f"{checkpoint.name} (its class embeddings)",
            "sha256": file_digest(embeddings.source, "sha256") if embeddings.source else digest,
            "file": _relative(embeddings.path, bundle),
        }
    return entry


def _relative(path: Path, bundle: Path) -> str:
    """``path`` relative to the bundle when it lies inside it (as metadata records it), else as given."""
    resolved, root = path.resolve(), bundle.resolve()
    return resolved.relative_to(root).as_posix() if resolved.is_relative_to(root) else str(path)


def _read_metadata(path: Path) -> dict[str, Any]:

    try:
        metadata = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataValidationError(f"{path}: not a readable metadata file ({err})") from err
    if not isinstance(metadata, dict):
        raise DataValidationError(f"{path}: metadata must be a JSON object")
    return metadata


def run(args: argparse.Namespace) -> int:
    """Run the command; returns the exit code."""
    overrides = dict(parse_override(text) for text in args.override)
    result = import_weights(args.bundle, args.checkpoint, args.out, args.text_embeddings, overrides)
    print(result.summary())
    return 0
